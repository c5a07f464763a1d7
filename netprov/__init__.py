"""netprov: declarative provisioning of diskless machines booting from a NAS over iSCSI."""

__version__ = "0.1.0"
