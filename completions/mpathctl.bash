# bash completion for mpathctl(8)                                  -*- shell-script -*-
#
# Map names come from the daemon (`mpathctl show maps --names`, which falls back to the
# kernel's view when no daemon runs); path names from /sys/block. Install as
# /usr/share/bash-completion/completions/mpathctl.

_mpathctl_maps()
{
    local sock=$1
    if [[ -n $sock ]]; then
        mpathctl --socket "$sock" show maps --names 2>/dev/null
    else
        mpathctl show maps --names 2>/dev/null
    fi
}

_mpathctl_paths()
{
    local dev name
    for dev in /sys/block/*; do
        name=${dev##*/}
        # path devices only: SCSI disks, NVMe namespaces, virtio, Xen
        case $name in
            sd* | nvme* | vd* | xvd*) printf '%s\n' "$name" ;;
        esac
    done
}

_mpathctl()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local global_opts="--socket --json --no-color --debug --help"
    local commands="status show watch fail reinstate add remove create flush switchgroup queueing reconfigure migrate-md import"

    # the command, its sub-view, the --socket given, and the positional arguments so far
    local i w cmd="" sub="" sock="" npos=0
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        case $w in
            --socket) sock=${words[i + 1]}; ((i++)); continue ;;
            --socket=*) sock=${w#--socket=}; continue ;;
            --format | --interval | -n | --count | --since | --limit | --name | --config-dir | --config)
                ((i++)); continue ;;
            -*) continue ;;
        esac
        if [[ -z $cmd ]]; then
            cmd=$w
        elif [[ $cmd == show && -z $sub ]]; then
            sub=$w
        else
            ((npos++))
        fi
    done

    case $prev in
        --socket)
            COMPREPLY=($(compgen -f -- "$cur"))
            return
            ;;
        --format)
            COMPREPLY=($(compgen -W "dmpath multipath-tools" -- "$cur"))
            return
            ;;
        --config-dir)
            COMPREPLY=($(compgen -d -- "$cur"))
            return
            ;;
        --interval | -n | --count | --since | --limit | --name)
            return
            ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global_opts --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    local opts=$global_opts words_list=""
    case $cmd in
        status)
            opts+=" --format"
            words_list=$(_mpathctl_maps "$sock")
            ;;
        watch)
            opts+=" --interval --count"
            words_list=$(_mpathctl_maps "$sock")
            ;;
        show)
            case $sub in
                "") words_list="paths maps map config events schema" ;;
                maps) opts+=" --names --format" ;;
                map) ((npos == 0)) && words_list=$(_mpathctl_maps "$sock") ;;
                events) opts+=" --since --limit" ;;
                schema) ((npos == 0)) && words_list="status map paths names events action" ;;
            esac
            ;;
        fail)
            opts+=" --force"
            ((npos == 0)) && words_list=$(_mpathctl_paths)
            ;;
        reinstate | add | remove)
            ((npos == 0)) && words_list=$(_mpathctl_paths)
            ;;
        create)
            opts+=" --name"
            ((npos == 0)) && words_list=$(_mpathctl_paths)
            ;;
        flush)
            opts+=" --force"
            ((npos == 0)) && words_list=$(_mpathctl_maps "$sock")
            ;;
        switchgroup)
            ((npos == 0)) && words_list=$(_mpathctl_maps "$sock")
            ;;
        queueing)
            if ((npos == 0)); then
                words_list=$(_mpathctl_maps "$sock")
            elif ((npos == 1)); then
                words_list="on off config"
            fi
            ;;
        migrate-md)
            opts+=" --name --config --dry-run"
            if ((npos == 0)) && [[ $cur != -* ]]; then
                # md arrays: /dev/mdN and their /dev/md/NAME links
                local a arrays=""
                for a in /dev/md[0-9]* /dev/md/*; do
                    [[ -e $a ]] && arrays+=" $a"
                done
                COMPREPLY=($(compgen -W "$arrays" -- "$cur"))
                return
            fi
            ;;
        import)
            opts+=" --config-dir"
            if ((npos == 0)); then
                words_list="multipath.conf"
            elif ((npos == 1)) && [[ $cur != -* ]]; then
                COMPREPLY=($(compgen -f -- "$cur"))
                return
            fi
            ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words_list" -- "$cur"))
    fi
} &&
    complete -F _mpathctl mpathctl

# ex: filetype=sh
