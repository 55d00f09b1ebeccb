"""The buyers' annual quota (DOMAIN §3), one component for every service: ``store`` reserves and
releases in Redis (Lua, idempotent per declaration and per part), ``rebuild`` recomputes it from
public topics."""
