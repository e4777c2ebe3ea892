//! IPVS: the kernel schedulers and the virtual-server machine.
