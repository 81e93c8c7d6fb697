# bench/pid1: the actions of the footprint run (BOSUN_CALLBACKS); `noop` is the request
# that makes the supervisor start its listener.
CB_noop() { :; }
