// The guest's exit helper for `cargo xtask vm-test`: not a module of xtask.
// xtask compiles this file with `rustc` into a static binary that the
// initramfs carries as /bin/vm-exit. `vm-exit CODE` writes CODE to QEMU's
// isa-debug-exit port (0xf4); QEMU then exits at once with status
// (CODE << 1) | 1, which is how the result leaves the VM. Debian's cloud
// kernels have no /dev/port, so a shell `dd` cannot do it.

use std::arch::asm;
use std::process::ExitCode;

const PORT: u16 = 0xf4;
const SYS_IOPERM: usize = 173;

fn main() -> ExitCode {
    let Some(code) = std::env::args().nth(1).and_then(|a| a.parse::<u8>().ok()) else {
        eprintln!("usage: vm-exit CODE (0-255)");
        return ExitCode::from(2);
    };
    let ret: isize;
    // SAFETY: ioperm(PORT, 1, 1) only changes this process's I/O permission
    // bitmap; the syscall clobbers rcx and r11, declared below.
    unsafe {
        asm!("syscall", inlateout("rax") SYS_IOPERM as isize => ret, in("rdi") usize::from(PORT),
             in("rsi") 1usize, in("rdx") 1usize, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    if ret != 0 {
        eprintln!("vm-exit: ioperm failed ({ret})");
        return ExitCode::from(1);
    }
    // SAFETY: the port was granted above; writing isa-debug-exit's port
    // ends the VM, which is the point.
    unsafe { asm!("out dx, al", in("dx") PORT, in("al") code, options(nomem, nostack)) };
    eprintln!("vm-exit: still running after writing port {PORT:#x}: is QEMU's isa-debug-exit device missing?");
    ExitCode::from(1)
}
