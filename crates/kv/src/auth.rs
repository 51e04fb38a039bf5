//! [`Auth`]: one connection's authentication, as Redis's `requirepass`
//! (the default user's password): `AUTH pass`, `AUTH default pass`,
//! `HELLO … AUTH default pass`. Shared by the key-value session and the
//! sentinel.

use std::sync::Arc;

use crate::resp::{write_error, write_ok};

pub const NOAUTH: &[u8] = b"NOAUTH Authentication required.";
pub const WRONGPASS: &[u8] = b"WRONGPASS invalid username-password pair or user is disabled.";
const NOAUTH_HELLO: &[u8] = b"NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// A connection's authentication state.
#[derive(Clone)]
pub struct Auth {
    /// The default user's password; None: it has none (any is accepted).
    password: Option<Arc<[u8]>>,
    authenticated: bool,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth::new(None)
    }
}

impl Auth {
    pub fn new(password: Option<Arc<[u8]>>) -> Auth {
        Auth { authenticated: password.is_none(), password }
    }

    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Commands answered before AUTH (Redis's `no_auth` flag), by
    /// lowercase name.
    pub fn exempt(name: &str) -> bool {
        matches!(name, "auth" | "hello" | "quit" | "reset")
    }

    /// The connection is the default user again (RESET): unauthenticated
    /// when that user has a password.
    pub fn reset(&mut self) {
        self.authenticated = self.password.is_none();
    }

    /// `AUTH [user] pass`: writes the reply.
    pub fn command(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) {
        let (user, pass) = match argv.len() {
            2 if self.password.is_none() => return write_error(
                out,
                b"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            2 => (&b"default"[..], argv[1]),
            3 => (argv[1], argv[2]),
            _ => return write_error(out, crate::cmd::SYNTAX),
        };
        if self.check(user, pass) {
            self.authenticated = true;
            write_ok(out);
        } else {
            write_error(out, WRONGPASS);
        }
    }

    /// HELLO's AUTH option (if given), then HELLO's own check: true if the
    /// connection may go on; otherwise the error reply is written.
    pub fn hello(&mut self, auth: Option<(&[u8], &[u8])>, out: &mut Vec<u8>) -> bool {
        if let Some((user, pass)) = auth {
            if !self.check(user, pass) {
                write_error(out, WRONGPASS);
                return false;
            }
            self.authenticated = true;
        }
        if !self.authenticated {
            write_error(out, NOAUTH_HELLO);
        }
        self.authenticated
    }

    /// The one user is `default`; without a password it takes any, as
    /// Redis's `nopass` default user does. Compared in constant time.
    fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        let same = |a: &[u8], b: &[u8]| a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        user == b"default" && self.password.as_deref().is_none_or(|p| same(p, pass))
    }
}
