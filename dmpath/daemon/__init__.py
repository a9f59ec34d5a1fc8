"""The daemon: one asyncio loop that owns the state; everything else posts events to it."""
