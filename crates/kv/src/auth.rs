//! [`Auth`]: one connection's authentication, as Redis's: the connection
//! runs as a user ([`crate::acl`]), `default` until `AUTH user pass` or
//! `HELLO … AUTH user pass` names another. Without an ACL file the only
//! user is `default`, with `requirepass`'s password (`AUTH pass`).
//! Shared by the key-value session and the sentinel.

use std::sync::Arc;

use crate::acl::{User, Users};
use crate::resp::{write_error, write_ok};

pub const NOAUTH: &[u8] = b"NOAUTH Authentication required.";
pub const WRONGPASS: &[u8] = b"WRONGPASS invalid username-password pair or user is disabled.";
const NOAUTH_HELLO: &[u8] = b"NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// A connection's authentication state.
#[derive(Clone)]
pub struct Auth {
    users: Arc<Users>,
    /// The user the connection runs as.
    user: Arc<User>,
    authenticated: bool,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth::new(None)
    }
}

impl Auth {
    /// Only the default user, with `password` (None: any is accepted).
    pub fn new(password: Option<Arc<[u8]>>) -> Auth {
        Auth::with_users(Arc::new(Users::new(password.as_deref())))
    }

    /// The users of an ACL file; the connection starts as `default`.
    pub fn with_users(users: Arc<Users>) -> Auth {
        let user = users.default_user();
        let mut auth = Auth { users, user, authenticated: false };
        auth.reset();
        auth
    }

    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The user the connection runs as (`default` before AUTH).
    pub fn user(&self) -> &Arc<User> {
        &self.user
    }

    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    /// Commands answered before AUTH (Redis's `no_auth` flag), by
    /// lowercase name.
    pub fn exempt(name: &str) -> bool {
        matches!(name, "auth" | "hello" | "quit" | "reset")
    }

    /// The connection is the default user again (a new connection, RESET):
    /// authenticated if that user is on and needs no password.
    pub fn reset(&mut self) {
        self.user = self.users.default_user();
        self.authenticated = self.user.nopass() && self.user.enabled();
    }

    /// `AUTH [user] pass`: writes the reply.
    pub fn command(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) {
        let (user, pass) = match argv.len() {
            2 if self.users.default_user().nopass() => return write_error(
                out,
                b"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            2 => (&b"default"[..], argv[1]),
            3 => (argv[1], argv[2]),
            _ => return write_error(out, crate::cmd::SYNTAX),
        };
        if self.login(user, pass) {
            write_ok(out);
        } else {
            write_error(out, WRONGPASS);
        }
    }

    /// HELLO's AUTH option (if given), then HELLO's own check: true if the
    /// connection may go on; otherwise the error reply is written.
    pub fn hello(&mut self, auth: Option<(&[u8], &[u8])>, out: &mut Vec<u8>) -> bool {
        if let Some((user, pass)) = auth {
            if !self.login(user, pass) {
                write_error(out, WRONGPASS);
                return false;
            }
        }
        if !self.authenticated {
            write_error(out, NOAUTH_HELLO);
        }
        self.authenticated
    }

    /// Becomes `user` if it exists, is on and `pass` is one of its
    /// passwords (any, for a `nopass` user); otherwise nothing changes.
    fn login(&mut self, user: &[u8], pass: &[u8]) -> bool {
        let Some(u) = self.users.get(user).filter(|u| u.enabled() && u.password_ok(pass)) else { return false };
        self.user = u.clone();
        self.authenticated = true;
        true
    }
}
