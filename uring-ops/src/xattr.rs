//! Extended attributes: `fgetxattr`, `fsetxattr`, `getxattr`, `setxattr`.
