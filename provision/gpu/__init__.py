"""GPU facts and preflight: which driver, flavour, CUDA and NGC images a host's GPUs can run."""
