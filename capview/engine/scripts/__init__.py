"""Every remote script the engine sends, built by pure functions, by concern.

shell (the one dialect and framing), lock, preflight, release (setup, state writes,
link, build), upload, service, switch (the host-driven switch transaction), cleanup
(prune), status (listings, usage sums and cache), migrate, ops (init, pin, history)
and inspect. A builder is a pure function of its inputs: the same arguments give the
same text (tests/golden pins it), and nothing random or clock-based is read inside
(callers pass the frame marker, the lock token and the time).
"""
