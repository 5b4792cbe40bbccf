"""Optional bridges to other frameworks. Nothing in the core imports this package; each module is loaded on
purpose (e.g. :mod:`perception.interop.openmmlab` through an OpenMMLab config's ``custom_imports``)."""
