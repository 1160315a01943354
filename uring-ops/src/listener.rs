//! The listener chain: socket, bind and listen as io_uring operations, phase by phase, with a handler that may abort between phases.
