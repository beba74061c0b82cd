//! Modes of what a data folder or a backup holds: every file 0600, every folder 0700, set
//! explicitly so that neither the process's umask nor a folder the operator made beforehand
//! decides them.

use std::fs::File;
use std::io;
use std::path::Path;

/// Restricts the file at `path` to its owner (0600).
pub fn restrict_file(path: &Path) -> io::Result<()> {
    set_mode(path, 0o600)
}

/// Restricts the folder at `path` to its owner (0700).
pub fn restrict_dir(path: &Path) -> io::Result<()> {
    set_mode(path, 0o700)
}

/// Creates the folder `dir` (and missing parents) and restricts it, also when it existed.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    restrict_dir(dir)
}

/// Creates the file at `path` for writing, 0600 from the start; fails if it exists.
pub fn create_new_file(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Copies the file `from` to `to` (which must not exist), 0600 and synced.
pub fn copy_file(from: &Path, to: &Path) -> io::Result<u64> {
    let mut source = File::open(from)?;
    let mut target = create_new_file(to)?;
    let copied = io::copy(&mut source, &mut target)?;
    target.sync_all()?;
    Ok(copied)
}

/// Syncs the folder `dir`, so that the entries made in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}
