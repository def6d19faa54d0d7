"""tinyserve: a toy GPU server whose workers bind to their GPU's NUMA node with gpunuma."""
