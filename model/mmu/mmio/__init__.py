"""Area 4: per-VM MMIO SPTE values and masks, generations, and several VMs side by side."""
