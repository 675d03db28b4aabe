"""WHAT the system is: the modelling core (`model.lang`) and the KVM MMU model (`model.mmu`)."""
