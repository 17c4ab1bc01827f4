//! Proxy credentials from `--user` / `--password`.
//!
//! The password never reaches a log line or an error message: `Debug` prints `***`.

use std::fmt;

#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    pub fn new(user: String, password: String) -> Self {
        Credentials { user, password }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let creds = Credentials::new("alice".into(), "hunter2".into());
        let shown = format!("{creds:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"));
    }
}
