"""The engine: sessions, admission, dispatch, the sweeper, forwarding, the hub, metrics and the
public Channel (asyncio, no Quart, no transport names; docs/architecture.md)."""
