//! Kernel datapath of the agent: namespaces, bridge, VXLAN, FDB, guard rules, WireGuard.
