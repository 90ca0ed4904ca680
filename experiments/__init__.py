"""natlab experiments: specs, the kernel run, the model run, comparison, bundles and the CLI."""
