//! The configuration every test starts from, and the few pieces tests add to it.
//!
//! `Config::new()` is one listener, "office", on 127.0.0.1:0 (SOCKS5 and HTTP, no
//! authentication) and an empty `deny_destinations`, so that the loopback upstreams the tests
//! start can be reached (the default list denies 127.0.0.0/8). Everything else is added in
//! order: users, pools, rules and raw TOML appear in the file in the order they were added, and
//! rule order is what decides.

use std::fmt;

use super::hash;

/// An egressd configuration under construction; `to_string()` renders the TOML.
#[derive(Clone, Debug)]
pub struct Config {
    /// `key = value` lines of `[proxy]`, a key at most once.
    proxy: Vec<(String, String)>,
    /// Lines of the one `[[listener]]` after its name and bind.
    listener: Vec<String>,
    /// Everything after the listener, in the order added.
    body: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    pub fn new() -> Config {
        Config {
            proxy: vec![("deny_destinations".into(), "[]".into())],
            listener: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Sets `[proxy] key = value` (`value` as TOML: `"1s"` with its quotes, `1`, `true`).
    pub fn proxy(mut self, key: &str, value: &str) -> Config {
        match self.proxy.iter_mut().find(|(k, _)| k == key) {
            Some(line) => line.1 = value.to_string(),
            None => self.proxy.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// Sets `[proxy] deny_destinations`.
    pub fn deny(self, networks: &[&str]) -> Config {
        self.proxy("deny_destinations", &quoted_list(networks))
    }

    /// Sets the listener's `auth` (none, optional, required).
    pub fn auth(self, mode: &str) -> Config {
        self.listener_line(&format!("auth = \"{mode}\""))
    }

    /// Adds a line to the listener (`protocols = ["https"]`, `tls = { ... }`); a line for a key
    /// already set replaces it.
    pub fn listener_line(mut self, line: &str) -> Config {
        let key = key_of(line);
        self.listener.retain(|l| key_of(l) != key);
        self.listener.push(line.to_string());
        self
    }

    /// A `[[user]]` with an argon2id hash of `password` and the given groups (none: no
    /// `groups` key).
    pub fn user(mut self, name: &str, password: &str, groups: &[&str]) -> Config {
        let mut user = format!(
            "[[user]]\nname = \"{name}\"\npassword = \"{}\"\n",
            hash(password)
        );
        if !groups.is_empty() {
            user.push_str(&format!("groups = {}\n", quoted_list(groups)));
        }
        self.body.push(user);
        self
    }

    /// A `[[pool]]` of IPv4 addresses, tried in order; `extra` lines are added as they are
    /// (`fallback = "deny"`, `interface = "lo"`), one per line.
    pub fn pool(mut self, name: &str, ipv4: &[&str], extra: &[&str]) -> Config {
        let mut pool = format!(
            "[[pool]]\nname = \"{name}\"\nipv4 = {}\n",
            quoted_list(ipv4)
        );
        for line in extra {
            pool.push_str(line);
            pool.push('\n');
        }
        self.body.push(pool);
        self
    }

    /// A rule sending what `when` matches out of `pool` (an empty `when`: everything).
    pub fn egress(self, name: &str, when: &str, pool: &str) -> Config {
        self.rule(
            name,
            when,
            &format!("action = \"egress\"\npool = \"{pool}\""),
        )
    }

    /// A rule sending members of `group` out of the pool of the same name, named after it.
    pub fn egress_group(self, group: &str) -> Config {
        self.egress(
            group,
            &format!("any(identity.groups[*] == \"{group}\")"),
            group,
        )
    }

    /// A rule blocking what `when` matches.
    pub fn block(self, name: &str, when: &str) -> Config {
        self.rule(name, when, "action = \"block\"")
    }

    /// The last rule of most tests: "catch-all", the default egress for everything.
    pub fn catch_all(self) -> Config {
        self.rule("catch-all", "", "action = \"default\"")
    }

    /// TOML added as it is, at this point of the file (devices, unusual pools and rules).
    pub fn toml(mut self, text: &str) -> Config {
        self.body.push(text.to_string());
        self
    }

    fn rule(mut self, name: &str, when: &str, then: &str) -> Config {
        let mut rule = format!("[[rule]]\nname = \"{name}\"\n");
        if !when.is_empty() {
            rule.push_str(&format!("when = '{when}'\n"));
        }
        rule.push_str(then);
        rule.push('\n');
        self.body.push(rule);
        self
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[proxy]")?;
        for (key, value) in &self.proxy {
            writeln!(f, "{key} = {value}")?;
        }
        writeln!(f, "\n[[listener]]\nname = \"office\"")?;
        if !self.listener.iter().any(|l| key_of(l) == "bind") {
            writeln!(f, "bind = \"127.0.0.1:0\"")?;
        }
        for line in &self.listener {
            writeln!(f, "{line}")?;
        }
        for table in &self.body {
            writeln!(f, "\n{}", table.trim_end())?;
        }
        Ok(())
    }
}

fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

fn key_of(line: &str) -> &str {
    line.split('=').next().unwrap_or("").trim()
}
