//! yescrypt password hashes through the system's crypt(3).
//!
//! yescrypt (`$y$PARAMS$SALT$HASH`, the default of current Debian, Fedora
//! and Ubuntu for `/etc/shadow`) is checked with `crypt_rn` from the
//! system's libcrypt (libxcrypt), the library that made the hash, as
//! Dovecot and PAM do. This module is the crate's one use of `unsafe`: two
//! calls into C with NUL-terminated copies of the inputs and a private
//! work area of the size libxcrypt asks for (`struct crypt_data`, 32768
//! bytes); the result is copied out before the area is dropped.
//!
//! A hash is accepted when the password file is loaded only if its form
//! is well made (`$y$`, then three `$`-separated fields in crypt's
//! alphabet `./0-9A-Za-z`, at most [`MAX_HASH`] octets) and the library
//! computes a hash with its parameters (an empty password): a system
//! whose libcrypt lacks yescrypt reports it at start, not at the first
//! login. Passwords with a NUL octet or longer than [`MAX_PASSWORD`]
//! octets never match.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// Longest stored hash accepted.
pub const MAX_HASH: usize = 256;
/// Longest password crypt(3) is given (libxcrypt's
/// `CRYPT_MAX_PASSPHRASE_SIZE` is 512 including the NUL).
pub const MAX_PASSWORD: usize = 511;
/// `sizeof(struct crypt_data)` in libxcrypt.
const CRYPT_DATA_SIZE: usize = 32768;

#[allow(unsafe_code)]
#[link(name = "crypt")]
unsafe extern "C" {
    fn crypt_rn(
        phrase: *const c_char,
        setting: *const c_char,
        data: *mut c_void,
        size: c_int,
    ) -> *mut c_char;
}

/// crypt(3) of `password` with the settings (and salt) of `hash`; `None`
/// when the library refuses.
fn crypt(password: &str, hash: &str) -> Option<String> {
    if password.len() > MAX_PASSWORD {
        return None;
    }
    let phrase = CString::new(password).ok()?;
    let setting = CString::new(hash).ok()?;
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    let size = c_int::try_from(data.len()).ok()?;
    #[allow(unsafe_code)]
    // SAFETY: both strings are NUL-terminated and outlive the call; `data`
    // is a zeroed, writable buffer of `size` bytes, as crypt_rn requires,
    // and outlives the call. crypt_rn returns NULL on failure or a pointer
    // into `data` to a NUL-terminated string, which is copied out before
    // `data` is dropped.
    let out = unsafe {
        let p = crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            size,
        );
        if p.is_null() {
            return None;
        }
        CStr::from_ptr(p).to_str().ok()?.to_owned()
    };
    // libxcrypt may also report failure with a string starting with '*'.
    (!out.starts_with('*')).then_some(out)
}

/// Checks that `hash` is a yescrypt hash this system can verify.
pub fn check_yescrypt(hash: &str) -> Result<(), String> {
    let well_made = hash.len() <= MAX_HASH
        && hash
            .strip_prefix("$y$")
            .map(|rest| rest.split('$').collect::<Vec<_>>())
            .is_some_and(|parts| {
                parts.len() == 3
                    && parts.iter().all(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
                    })
            });
    if !well_made {
        return Err("malformed yescrypt hash".into());
    }
    match crypt("", hash) {
        Some(_) => Ok(()),
        None => Err("the system's crypt(3) cannot verify this yescrypt hash".into()),
    }
}

/// Whether `password` matches the yescrypt `hash` (compared in constant
/// time). Slow by design: call it off the async threads.
pub fn verify_yescrypt(password: &str, hash: &str) -> bool {
    crypt(password, hash).is_some_and(|out| crate::auth::ct_eq(out.as_bytes(), hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by libxcrypt (Python's `crypt.crypt("secret", "$y$j9T$abcdefghijklmnop")`).
    const SECRET: &str = "$y$j9T$abcdefghijklmnop$3dL1LkYnZM.OVXuVdnnaKVDlLYT92dRwOzDZ5XiVCe.";

    #[test]
    fn known_hash() {
        assert!(check_yescrypt(SECRET).is_ok());
        assert!(verify_yescrypt("secret", SECRET));
        assert!(!verify_yescrypt("Secret", SECRET));
        assert!(!verify_yescrypt("", SECRET));
        assert!(!verify_yescrypt("secret\0", SECRET));
        assert!(!verify_yescrypt(&"x".repeat(MAX_PASSWORD + 1), SECRET));
    }

    #[test]
    fn malformed_hashes_are_refused_at_load() {
        for bad in [
            "$y$",
            "$y$j9T$abc",
            "$y$j9T$abc$def$ghi",
            "$y$j9T$ab c$def",
            "$y$$abc$def",
            "$6$salt$hash",
        ] {
            assert!(check_yescrypt(bad).is_err(), "{bad}");
        }
        let long = format!("$y$j9T$abcdefghijklmnop${}", "a".repeat(MAX_HASH));
        assert!(check_yescrypt(&long).is_err());
        // Well made, but parameters the library rejects.
        assert!(check_yescrypt("$y$j$abcdefghijklmnop$xyz").is_err());
    }
}
