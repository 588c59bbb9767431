"""Changing a GPU and putting it back: clock sessions, journals, recovery, GPU leases, open_device."""
