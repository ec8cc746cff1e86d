//! The pause container behind every awsvpc task: it owns the task's network namespace, and
//! the task's containers join it, so they share one IP and `localhost`.
//!
//! No image can be pulled, so the agent makes its own: a 129-byte static x86-64 ELF that
//! loops on `pause(2)`, wrapped in a one-file tar and imported into the engine
//! (`docker import`). It must stay tiny and have no dependencies at all.

/// The image the agent imports and runs as every awsvpc task's pause container.
pub const PAUSE_IMAGE: &str = "wharf-pause:1";

const LOAD_ADDR: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// `mov eax, 34 (pause); syscall; jmp -9` — sleeps until killed, forever.
const CODE: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];

/// The pause program as a static ELF executable for x86-64 Linux.
pub fn pause_elf() -> Vec<u8> {
    let size = (EHDR + PHDR + CODE.len()) as u64;
    let mut e = Vec::with_capacity(size as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(LOAD_ADDR + (EHDR + PHDR) as u64).to_le_bytes()); // entry
    e.extend_from_slice(&(EHDR as u64).to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&(EHDR as u16).to_le_bytes());
    e.extend_from_slice(&(PHDR as u16).to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R + X
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // vaddr
    e.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // paddr
    e.extend_from_slice(&size.to_le_bytes()); // filesz
    e.extend_from_slice(&size.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    e.extend_from_slice(&CODE);
    e
}

/// A ustar archive holding one executable file at the root.
pub fn single_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000755\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(&mut header, 124, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut header, 136, b"00000000000\0");
    put(&mut header, 148, b"        ");
    header[156] = b'0';
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_program_runs_until_killed() {
        let dir = std::env::temp_dir().join(format!("wharf-pause-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pause");
        std::fs::write(&path, pause_elf()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(child.try_wait().unwrap().is_none(), "pause exited on its own");
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tar_has_a_valid_header_and_padding() {
        let tar = single_file_tar("pause", &pause_elf());
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[257..263], b"ustar\0");
        assert_eq!(&tar[512..516], &[0x7f, b'E', b'L', b'F']);
    }
}
