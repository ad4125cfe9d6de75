//! `intercom-sspm keygen`: a fresh token key on stdout, guidance on stderr.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use crate::crypto::TokenKey;

pub fn run() -> anyhow::Result<ExitCode> {
    let key = TokenKey::generate();
    outln!("{}", key.to_base64().expose_secret());
    eprintln!(
        "New token key (id {}). Store it as a secret and provide it as security.token_key \
         (env SSPM__SECURITY__TOKEN_KEY) or in a file named by security.token_key_file. \
         Tokens sealed with it cannot be opened without it.",
        key.id()
    );
    Ok(ExitCode::SUCCESS)
}
