//! Bearer tokens: who may read the views, and what the server may know about
//! them. This is the only module that knows tokens are JWTs.
//!
//! Why JWTs: the party that decides who sees what (the application's login,
//! or an identity provider) already issues them, and viewcast can check one
//! on every request without a session store or a call back to anyone. A
//! token verifies against exactly one key, configured at startup:
//!
//! ```text
//! --jwt-secret S          HS256 (HMAC-SHA256 with a secret shared with the issuer)
//! --jwt-public-key FILE   RS256 for an RSA public key (2048 bits or more),
//!                         ES256 for an EC P-256 public key; told apart by the PEM
//! ```
//!
//! A token is refused unless its header names that one algorithm (so `alg:
//! none` and the HS256-signed-with-the-public-key confusion never reach a
//! signature check), its signature verifies, it has an `exp` that has not
//! passed (exactly) and any `nbf` has come (within [`LEEWAY`]). What comes out is a
//! [`Claims`], which has no other constructor: claims are never taken from
//! anything but a verified token (`docs/architecture.md`, "Claims come only
//! from a verified token").
//!
//! [`Auth::verify`] is all a caller needs: the HTTP middleware calls it with
//! the request's bearer token, and a websocket can call it for a token sent
//! in a frame (and [`Claims::expires_at`] tells it when to stop trusting it).
//!
//! The signature checks are the `jsonwebtoken` crate's, on its RustCrypto
//! backend (pure Rust: no OpenSSL, no aws-lc C build); key files are read
//! here so that a wrong key is a startup error that says what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Longest token accepted, in bytes. Real tokens are a few hundred bytes to a
/// couple of KiB (an identity provider's with many groups); past 8 KiB it is
/// not a token anyone meant to send, and nothing is decoded or hashed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Clock skew tolerated between the issuer and this server for `nbf`: a
/// token counts as valid from 30 s before its `nbf`, so a token fresh from an
/// issuer whose clock runs ahead works at once. `exp` gets no leeway: a token
/// is refused from the second it expires.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Smallest RSA modulus accepted, in bits: RFC 7518 section 3.3 says a key of
/// 2048 bits or larger MUST be used with RS256.
pub const MIN_RSA_BITS: usize = 2048;

/// HS256 secrets shorter than this many bytes are accepted with a warning:
/// RFC 7518 section 3.2 asks for a key as long as the hash (256 bits), and a
/// short one can be guessed offline from any token.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest piece of a token (its `alg`) echoed back in an error.
const MAX_ECHOED: usize = 32;

/// Everything that can go wrong configuring or checking tokens. The messages
/// never contain a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    // Startup: the key.
    #[error("both a JWT secret (--jwt-secret / VIEWCAST_JWT_SECRET) and a JWT public key (--jwt-public-key / VIEWCAST_JWT_PUBLIC_KEY) are set; set only one: the secret for HS256 tokens, or the public key file for RS256/ES256 tokens")]
    BothKeys,
    #[error("the JWT secret is empty; give the HS256 secret the token issuer signs with")]
    EmptySecret,
    #[error("cannot read the JWT public key file {path}: {source}")]
    KeyFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JWT public key file {path} is not usable: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("the JWT public key is not usable: {0}")]
    Key(String),

    // A request: where the token should be.
    #[error("this endpoint needs a token: send `Authorization: Bearer <token>`, or `?access_token=<token>` where headers cannot be set (EventSource)")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("more than one access_token in the query; send one token")]
    SeveralTokens,

    // A request: the token itself.
    #[error("the token is {0} bytes; tokens over {MAX_TOKEN_BYTES} bytes are refused")]
    TooLong(usize),
    #[error("the token is not a JWT: {0}")]
    Malformed(&'static str),
    #[error("unsigned tokens (alg \"none\") are refused")]
    Unsigned,
    #[error("the token is signed with {got}; this server accepts only {want}")]
    Algorithm { got: String, want: &'static str },
    #[error(
        "the token names critical header parameters (crit), which this server does not understand"
    )]
    Critical,
    #[error("the token's signature does not verify with the configured key")]
    Signature,
    #[error("the token has no exp claim (a number of seconds since 1970); tokens must expire")]
    NoExpiry,
    #[error("the token has expired; get a new one")]
    Expired,
    #[error("the token is not valid yet (its nbf is in the future)")]
    NotYetValid,
    #[error("the token's {0} claim is not a number of seconds since 1970")]
    BadTime(String),
    #[error("the token's claims are not a JSON object")]
    NotAnObject,
}

impl AuthError {
    /// True when the request carried no token at all (rather than a bad
    /// one): HTTP answers it with a bare `WWW-Authenticate: Bearer`.
    pub fn is_missing(&self) -> bool {
        matches!(self, AuthError::Missing)
    }
}

/// Which key tokens are checked against, as the operator gave it.
#[derive(Clone)]
pub enum AuthConfig {
    /// HS256 with this shared secret (its UTF-8 bytes).
    Secret(String),
    /// RS256 or ES256 with the public key in this PEM file.
    PublicKeyFile(PathBuf),
}

impl fmt::Debug for AuthConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthConfig::Secret(_) => f.write_str("Secret(<redacted>)"),
            AuthConfig::PublicKeyFile(path) => f.debug_tuple("PublicKeyFile").field(path).finish(),
        }
    }
}

impl AuthConfig {
    /// The setting from its two options (each a flag or its environment
    /// variable): none, one, or an error for both.
    pub fn from_options(
        secret: Option<String>,
        public_key: Option<PathBuf>,
    ) -> Result<Option<AuthConfig>, AuthError> {
        match (secret, public_key) {
            (Some(_), Some(_)) => Err(AuthError::BothKeys),
            (Some(secret), None) => Ok(Some(AuthConfig::Secret(secret))),
            (None, Some(path)) => Ok(Some(AuthConfig::PublicKeyFile(path))),
            (None, None) => Ok(None),
        }
    }
}

/// The verified claims of a token: its payload, a JSON object. Made only by
/// [`Auth::verify`]; cheap to clone (HTTP puts one in each request's
/// extensions).
#[derive(Clone, PartialEq)]
pub struct Claims {
    claims: Arc<Map<String, Value>>,
    exp: u64,
}

impl Claims {
    /// The `sub` claim (whom the token is about), when it is a string.
    pub fn sub(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }

    /// Any claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// The `exp` claim: seconds since 1970 (every verified token has one).
    pub fn exp(&self) -> u64 {
        self.exp
    }

    /// When the token expires (its `exp`): verification refuses it from
    /// then on, and a connection that outlives it should end then.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }

    /// All the claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.claims
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Claims").field(&self.claims).finish()
    }
}

/// The configured key and the rules a token must pass. Build it once at
/// startup and share it (`Arc<Auth>`).
pub struct Auth {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Auth {
    /// Names the algorithm only; the key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Reads the key the operator configured (a public key file is read
    /// now, so a bad one fails startup).
    pub fn from_config(config: &AuthConfig) -> Result<Auth, AuthError> {
        match config {
            AuthConfig::Secret(secret) => Auth::hs256(secret.as_bytes()),
            AuthConfig::PublicKeyFile(path) => Auth::from_public_key_file(path),
        }
    }

    /// HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Result<Auth, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        if secret.len() < MIN_SECRET_BYTES {
            tracing::warn!(
                bytes = secret.len(),
                "the JWT secret is short; use at least {MIN_SECRET_BYTES} random bytes"
            );
        }
        let key = DecodingKey::from_secret(secret).map_err(|_| AuthError::EmptySecret)?;
        Ok(Auth::new(Algorithm::HS256, key))
    }

    /// RS256 or ES256 tokens, by the kind of public key in the PEM file at `path`.
    pub fn from_public_key_file(path: &Path) -> Result<Auth, AuthError> {
        let pem = std::fs::read(path).map_err(|source| AuthError::KeyFileUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let (alg, key) = public_key(&pem).map_err(|reason| AuthError::KeyFile {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(Auth::new(alg, key))
    }

    /// RS256 or ES256 tokens, by the kind of public key in `pem`.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Auth, AuthError> {
        let (alg, key) = public_key(pem).map_err(AuthError::Key)?;
        Ok(Auth::new(alg, key))
    }

    fn new(alg: Algorithm, key: DecodingKey) -> Auth {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY.as_secs();
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // No audience is configured, so `aud` is not checked (the crate
        // would otherwise refuse every token that has one).
        validation.validate_aud = false;
        Auth {
            alg,
            key,
            validation,
        }
    }

    /// The one algorithm tokens must be signed with: "HS256", "RS256" or "ES256".
    pub fn algorithm(&self) -> &'static str {
        alg_name(self.alg)
    }

    /// Checks `token` (the compact JWT, without "Bearer ") and returns its
    /// claims; see the module docs for what is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong(token.len()));
        }
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.check_header(token)?;
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|e| self.refusal(e))?;
        let Value::Object(claims) = data.claims else {
            return Err(AuthError::NotAnObject);
        };
        let exp = match claims.get("exp") {
            Some(v) => seconds(v).ok_or_else(|| AuthError::BadTime("exp".into()))?,
            None => return Err(AuthError::NoExpiry),
        };
        // Expiry is exact (RFC 7519: valid only before `exp`): the leeway
        // is for `nbf`, where an issuer's clock ahead of ours would refuse a
        // fresh token; a late server clock must not stretch a token's life.
        if UNIX_EPOCH + Duration::from_secs(exp) <= SystemTime::now() {
            return Err(AuthError::Expired);
        }
        Ok(Claims {
            claims: Arc::new(claims),
            exp,
        })
    }

    /// Reads the header before anything else, to refuse `alg: none`, another
    /// algorithm than the key's, and `crit`, each with its own reason (the
    /// crate would refuse them too, but as a JSON error or a bare
    /// "InvalidAlgorithm").
    fn check_header(&self, token: &str) -> Result<(), AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "expected three base64url parts separated by dots",
            ));
        };
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthError::Malformed("its header is not base64url"))?;
        let header: Map<String, Value> = serde_json::from_slice(&header)
            .map_err(|_| AuthError::Malformed("its header is not a JSON object"))?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            _ => return Err(AuthError::Malformed("its header names no alg")),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::Unsigned);
        }
        if alg != self.algorithm() {
            return Err(AuthError::Algorithm {
                got: shown(alg),
                want: self.algorithm(),
            });
        }
        if header.contains_key("crit") {
            return Err(AuthError::Critical);
        }
        Ok(())
    }

    /// The reason for a refusal the crate found.
    fn refusal(&self, e: jsonwebtoken::errors::Error) -> AuthError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.into_kind() {
            K::ExpiredSignature => AuthError::Expired,
            K::ImmatureSignature => AuthError::NotYetValid,
            K::MissingRequiredClaim(_) => AuthError::NoExpiry,
            K::InvalidClaimFormat(claim) => AuthError::BadTime(claim),
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                AuthError::Algorithm {
                    got: "another algorithm".into(),
                    want: self.algorithm(),
                }
            }
            K::Base64(_) => AuthError::Malformed("a part is not base64url"),
            K::Json(_) | K::Utf8(_) => AuthError::Malformed("a part is not JSON"),
            K::InvalidToken => AuthError::Malformed("its header or payload is not valid"),
            // A signature of the wrong length or shape for the key, or one
            // that does not verify.
            _ => AuthError::Signature,
        }
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "an unsupported algorithm",
    }
}

/// A NumericDate claim as whole seconds.
fn seconds(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// An attacker-chosen string as an error shows it: cut short.
fn shown(s: &str) -> String {
    if s.len() <= MAX_ECHOED {
        return format!("\"{s}\"");
    }
    let mut end = MAX_ECHOED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("\"{}...\"", &s[..end])
}

// Object identifiers of the public keys an operator may give (RFC 5480, RFC 8017, RFC 8410).
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";

/// Which algorithm a PEM public key is for, and the key: RS256 for an RSA
/// key (`PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`), ES256 for an EC P-256 key;
/// anything else is refused with what it is and what to give instead.
fn public_key(pem: &[u8]) -> Result<(Algorithm, DecodingKey), String> {
    let blocks = pem::parse_many(pem).map_err(|e| format!("not PEM ({e})"))?;
    let block = match blocks.as_slice() {
        [] => {
            return Err("no PEM block in it; give a public key in PEM form \
                        (-----BEGIN PUBLIC KEY-----)"
                .into())
        }
        [block] => block,
        _ => {
            return Err(format!(
                "{} PEM blocks in it; give exactly one public key",
                blocks.len()
            ))
        }
    };
    match block.tag() {
        "PUBLIC KEY" => spki_key(block.contents()),
        "RSA PUBLIC KEY" => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let key = rsa::PublicKey::from_pkcs1_der(block.contents())
                .map_err(|e| format!("not a valid RSA public key ({e})"))?;
            rsa_key(&key)
        }
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
            Err("it holds a private key; give only the public key \
             (`openssl pkey -in KEY -pubout` prints it)"
                .into())
        }
        "CERTIFICATE" => Err("it holds a certificate; give its public key \
                              (`openssl x509 -in CERT -pubkey -noout` prints it)"
            .into()),
        other => Err(format!(
            "it holds a \"{}\" block; give a public key (-----BEGIN PUBLIC KEY-----)",
            shown(other).trim_matches('"')
        )),
    }
}

/// A SubjectPublicKeyInfo (`PUBLIC KEY`), by its algorithm identifier.
fn spki_key(der: &[u8]) -> Result<(Algorithm, DecodingKey), String> {
    use spki::der::Decode;
    let info = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| format!("not a valid public key ({e})"))?;
    let supported = "viewcast takes an RSA key (RS256) or an EC P-256 key (ES256)";
    match info.algorithm.oid.to_string().as_str() {
        OID_RSA => {
            let key = rsa::PublicKey::try_from(info)
                .map_err(|e| format!("not a valid RSA public key ({e})"))?;
            rsa_key(&key)
        }
        OID_EC => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|oid| oid.to_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => {
                    use p256::pkcs8::DecodePublicKey;
                    let key = p256::PublicKey::from_public_key_der(der)
                        .map_err(|e| format!("not a valid P-256 public key ({e})"))?;
                    Ok((
                        Algorithm::ES256,
                        DecodingKey::from_ec_der(&key.to_sec1_bytes()),
                    ))
                }
                OID_P384 => Err(format!("an EC key on P-384 (ES384); {supported}")),
                OID_P521 => Err(format!("an EC key on P-521 (ES512); {supported}")),
                _ => Err(format!("an EC key on an unknown curve; {supported}")),
            }
        }
        OID_RSA_PSS => Err(format!(
            "an RSA-PSS key (PS256); {supported} (an rsaEncryption key)"
        )),
        OID_ED25519 | OID_ED448 => Err(format!("an EdDSA key; {supported}")),
        oid => Err(format!("a key of algorithm {oid}; {supported}")),
    }
}

fn rsa_key(key: &rsa::PublicKey) -> Result<(Algorithm, DecodingKey), String> {
    use rsa::traits::PublicKeyParts;
    let bits = key.n().bit_width() as usize;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA key of {bits} bits; RS256 needs {MIN_RSA_BITS} bits or more (RFC 7518)"
        ));
    }
    Ok((
        Algorithm::RS256,
        DecodingKey::from_rsa_raw_components(&key.n_bytes(), &key.e_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a test secret of thirty-two bytes!";
    const RSA_KEY: &[u8] = include_bytes!("../tests/keys/rsa.key.pem");
    const RSA_PUB: &[u8] = include_bytes!("../tests/keys/rsa.pub.pem");
    const RSA_PKCS1_PUB: &[u8] = include_bytes!("../tests/keys/rsa.pkcs1.pub.pem");
    const RSA_OTHER_KEY: &[u8] = include_bytes!("../tests/keys/rsa-other.key.pem");
    const RSA_1024_PUB: &[u8] = include_bytes!("../tests/keys/rsa1024.pub.pem");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(sub: &str) -> Value {
        json!({ "sub": sub, "exp": now() + 600, "tenant": 7 })
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
    }

    fn hmac(secret: &[u8]) -> EncodingKey {
        EncodingKey::from_secret(secret).expect("hmac key")
    }

    fn hs(claims: &Value) -> String {
        sign(Algorithm::HS256, &hmac(SECRET), claims)
    }

    fn rs(key: &[u8], claims: &Value) -> String {
        sign(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(key).expect("rsa key"),
            claims,
        )
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with any header and payload, and `signature` as its third part.
    fn raw(header: &Value, payload: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        )
    }

    /// An HS256 token over any header and payload, correctly signed.
    fn hs_raw(header: &Value, payload: &str) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &hmac(SECRET), Algorithm::HS256)
            .expect("sign");
        format!("{message}.{sig}")
    }

    fn hs_auth() -> Auth {
        Auth::hs256(SECRET).expect("hs256")
    }

    fn refused(auth: &Auth, token: &str) -> AuthError {
        let err = auth.verify(token).expect_err("the token must be refused");
        let text = err.to_string();
        assert!(
            token.len() < 16 || !text.contains(token),
            "the message echoes the token: {text}"
        );
        err
    }

    /// (private key PEM, public key PEM) of a fresh EC key.
    fn ec_key(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).expect("generate an EC key");
        (key.serialize_pem(), key.public_key_pem())
    }

    fn es(private_pem: &str, claims: &Value) -> String {
        sign(
            Algorithm::ES256,
            &EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("ec key"),
            claims,
        )
    }

    #[test]
    fn hs256_token_gives_its_claims() {
        let exp = now() + 600;
        let token = hs(&json!({ "sub": "alice", "exp": exp, "tenant": 7 }));
        let claims = hs_auth().verify(&token).expect("valid");
        assert_eq!(claims.sub(), Some("alice"));
        assert_eq!(claims.get("tenant"), Some(&json!(7)));
        assert_eq!(claims.get("missing"), None);
        assert_eq!(claims.exp(), exp);
        assert_eq!(claims.expires_at(), UNIX_EPOCH + Duration::from_secs(exp));
        assert_eq!(claims.as_map().len(), 3);
        assert_eq!(hs_auth().algorithm(), "HS256");
    }

    #[test]
    fn sub_that_is_not_a_string_is_none() {
        let token = hs(&json!({ "sub": 42, "exp": now() + 600 }));
        let claims = hs_auth().verify(&token).expect("valid");
        assert_eq!(claims.sub(), None);
        assert_eq!(claims.get("sub"), Some(&json!(42)));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = sign(
            Algorithm::HS256,
            &hmac(b"another secret of thirty-two bytes"),
            &claims("alice"),
        );
        assert!(matches!(refused(&hs_auth(), &token), AuthError::Signature));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let token = hs(&claims("alice"));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims("mallory").to_string().as_bytes()),
            parts[2]
        );
        assert!(matches!(refused(&hs_auth(), &forged), AuthError::Signature));
    }

    #[test]
    fn expiry_is_required_and_exact() {
        let auth = hs_auth();
        let expired = hs(&json!({ "sub": "a", "exp": now() - 120 }));
        assert!(matches!(refused(&auth, &expired), AuthError::Expired));
        let just_expired = hs(&json!({ "sub": "a", "exp": now() - 1 }));
        assert!(matches!(refused(&auth, &just_expired), AuthError::Expired));
        let fresh = hs(&json!({ "sub": "a", "exp": now() + 5 }));
        auth.verify(&fresh).expect("valid until its exp");
        let no_exp = hs(&json!({ "sub": "a" }));
        assert!(matches!(refused(&auth, &no_exp), AuthError::NoExpiry));
        let text_exp = hs(&json!({ "sub": "a", "exp": "tomorrow" }));
        assert!(matches!(refused(&auth, &text_exp), AuthError::NoExpiry));
        let negative = hs(&json!({ "sub": "a", "exp": -5 }));
        assert!(matches!(refused(&auth, &negative), AuthError::NoExpiry));
    }

    #[test]
    fn not_before_is_honoured_with_leeway() {
        let auth = hs_auth();
        let early = hs(&json!({ "sub": "a", "exp": now() + 600, "nbf": now() + 300 }));
        assert!(matches!(refused(&auth, &early), AuthError::NotYetValid));
        let within_leeway = hs(&json!({ "sub": "a", "exp": now() + 600, "nbf": now() + 10 }));
        auth.verify(&within_leeway)
            .expect("10 s early is within the leeway");
        let past = hs(&json!({ "sub": "a", "exp": now() + 600, "nbf": now() - 300 }));
        auth.verify(&past).expect("nbf passed");
        let text_nbf = hs(&json!({ "sub": "a", "exp": now() + 600, "nbf": "soon" }));
        assert!(matches!(refused(&auth, &text_nbf), AuthError::BadTime(c) if c == "nbf"));
    }

    #[test]
    fn alg_none_is_refused() {
        let auth = hs_auth();
        for alg in ["none", "None", "NONE"] {
            let unsigned = raw(&json!({ "alg": alg, "typ": "JWT" }), &claims("a"), "");
            assert!(matches!(refused(&auth, &unsigned), AuthError::Unsigned));
        }
        // With the signature of a real token pasted on.
        let real = hs(&claims("a"));
        let sig = real.rsplit('.').next().unwrap();
        let pasted = raw(&json!({ "alg": "none" }), &claims("a"), sig);
        assert!(matches!(refused(&auth, &pasted), AuthError::Unsigned));
        let rsa = Auth::from_public_key_pem(RSA_PUB).unwrap();
        let unsigned = raw(&json!({ "alg": "none" }), &claims("a"), "");
        assert!(matches!(refused(&rsa, &unsigned), AuthError::Unsigned));
    }

    #[test]
    fn rs256_token_against_a_secret_is_refused() {
        let token = rs(RSA_KEY, &claims("alice"));
        match refused(&hs_auth(), &token) {
            AuthError::Algorithm { got, want } => {
                assert_eq!(got, "\"RS256\"");
                assert_eq!(want, "HS256");
            }
            e => panic!("wrong refusal: {e}"),
        }
    }

    /// The classic confusion: the public key is public, so an attacker signs
    /// an HS256 token with its PEM text as the HMAC secret and hopes the
    /// server verifies with "the key" under the token's algorithm.
    #[test]
    fn hs256_token_signed_with_the_public_key_is_refused() {
        let rsa = Auth::from_public_key_pem(RSA_PUB).expect("rsa key");
        for secret in [RSA_PUB, RSA_PKCS1_PUB] {
            let token = sign(Algorithm::HS256, &hmac(secret), &claims("mallory"));
            assert!(matches!(
                refused(&rsa, &token),
                AuthError::Algorithm { want: "RS256", .. }
            ));
        }
        let (_, ec_pub) = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let ec = Auth::from_public_key_pem(ec_pub.as_bytes()).expect("ec key");
        let token = sign(
            Algorithm::HS256,
            &hmac(ec_pub.as_bytes()),
            &claims("mallory"),
        );
        assert!(matches!(
            refused(&ec, &token),
            AuthError::Algorithm { want: "ES256", .. }
        ));
    }

    #[test]
    fn other_hmac_strengths_are_refused() {
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, &hmac(SECRET), &claims("a"));
            assert!(matches!(
                refused(&hs_auth(), &token),
                AuthError::Algorithm { .. }
            ));
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let auth = hs_auth();
        let good = hs(&claims("a"));
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            "garbage".to_string(),
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            format!("{good}.{}", parts[2]),
            "!!!.###.$$$".to_string(),
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
            format!("{}.{}.{}", b64(br#"{"typ":"JWT"}"#), parts[1], parts[2]),
            format!("{}.{}.{}", b64(br#"{"alg":7}"#), parts[1], parts[2]),
            "\u{0}\u{1}\u{ff}.\n.\t".to_string(),
        ];
        for token in &cases {
            assert!(
                matches!(refused(&auth, token), AuthError::Malformed(_)),
                "{token:?}"
            );
        }
        // A correctly signed token whose payload is not JSON, or not an object.
        let header = json!({ "alg": "HS256", "typ": "JWT" });
        for payload in ["not json", "\"a string\"", "[1,2,3]"] {
            let token = hs_raw(&header, payload);
            let err = refused(&auth, &token);
            assert!(
                matches!(err, AuthError::Malformed(_) | AuthError::NotAnObject),
                "{payload}: {err}"
            );
        }
        // A signature that is not base64url.
        let token = format!("{}.{}.not*base64", parts[0], parts[1]);
        let err = refused(&auth, &token);
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::Signature),
            "{err}"
        );
        assert!(matches!(refused(&auth, ""), AuthError::Missing));
    }

    #[test]
    fn oversized_token_is_refused_before_decoding() {
        let auth = hs_auth();
        let padding = "x".repeat(MAX_TOKEN_BYTES);
        let big = hs(&json!({ "sub": "a", "exp": now() + 600, "pad": padding }));
        assert!(matches!(refused(&auth, &big), AuthError::TooLong(n) if n == big.len()));
        let junk = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(refused(&auth, &junk), AuthError::TooLong(_)));
        // Just under the cap is checked as usual.
        let fits = hs(&json!({ "sub": "a", "exp": now() + 600, "pad": "x".repeat(4000) }));
        auth.verify(&fits).expect("a 5 KiB token is fine");
    }

    #[test]
    fn critical_headers_are_refused() {
        let header = json!({ "alg": "HS256", "crit": ["exp"], "exp": 1 });
        let token = hs_raw(&header, &claims("a").to_string());
        assert!(matches!(refused(&hs_auth(), &token), AuthError::Critical));
    }

    #[test]
    fn alg_named_at_length_is_cut() {
        let long = "X".repeat(500);
        let token = raw(&json!({ "alg": long }), &claims("a"), "sig");
        let text = refused(&hs_auth(), &token).to_string();
        assert!(text.len() < 200, "{text}");
    }

    #[test]
    fn rs256_with_spki_and_pkcs1_public_keys() {
        for public in [RSA_PUB, RSA_PKCS1_PUB] {
            let auth = Auth::from_public_key_pem(public).expect("rsa key");
            assert_eq!(auth.algorithm(), "RS256");
            let got = auth.verify(&rs(RSA_KEY, &claims("bob"))).expect("valid");
            assert_eq!(got.sub(), Some("bob"));
            let wrong = rs(RSA_OTHER_KEY, &claims("bob"));
            assert!(matches!(refused(&auth, &wrong), AuthError::Signature));
            let expired = rs(RSA_KEY, &json!({ "sub": "bob", "exp": now() - 120 }));
            assert!(matches!(refused(&auth, &expired), AuthError::Expired));
        }
    }

    #[test]
    fn rs256_key_refuses_other_rsa_and_ec_algorithms() {
        let auth = Auth::from_public_key_pem(RSA_PUB).unwrap();
        let key = EncodingKey::from_rsa_pem(RSA_KEY).unwrap();
        for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
            let token = sign(alg, &key, &claims("a"));
            assert!(matches!(
                refused(&auth, &token),
                AuthError::Algorithm { .. }
            ));
        }
        let (ec_private, _) = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let token = es(&ec_private, &claims("a"));
        assert!(matches!(
            refused(&auth, &token),
            AuthError::Algorithm { .. }
        ));
    }

    #[test]
    fn es256_with_a_p256_key() {
        let (private, public) = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let auth = Auth::from_public_key_pem(public.as_bytes()).expect("ec key");
        assert_eq!(auth.algorithm(), "ES256");
        let got = auth.verify(&es(&private, &claims("carol"))).expect("valid");
        assert_eq!(got.sub(), Some("carol"));
        let (other, _) = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let wrong = es(&other, &claims("carol"));
        assert!(matches!(refused(&auth, &wrong), AuthError::Signature));
        let rs256 = rs(RSA_KEY, &claims("carol"));
        assert!(matches!(
            refused(&auth, &rs256),
            AuthError::Algorithm { .. }
        ));
        let not_before = es(
            &private,
            &json!({ "sub": "c", "exp": now() + 600, "nbf": now() + 300 }),
        );
        assert!(matches!(
            refused(&auth, &not_before),
            AuthError::NotYetValid
        ));
    }

    fn key_refusal(pem: &[u8]) -> String {
        match Auth::from_public_key_pem(pem) {
            Ok(auth) => panic!("key accepted as {}", auth.algorithm()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unusable_public_keys_say_what_they_are() {
        let text = key_refusal(RSA_1024_PUB);
        assert!(text.contains("1024 bits"), "{text}");
        let (_, p384) = ec_key(&rcgen::PKCS_ECDSA_P384_SHA384);
        let text = key_refusal(p384.as_bytes());
        assert!(text.contains("P-384"), "{text}");
        let (_, ed) = ec_key(&rcgen::PKCS_ED25519);
        let text = key_refusal(ed.as_bytes());
        assert!(text.contains("EdDSA"), "{text}");
        let text = key_refusal(RSA_KEY);
        assert!(text.contains("private key"), "{text}");
        let (p256_private, _) = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let text = key_refusal(p256_private.as_bytes());
        assert!(text.contains("private key"), "{text}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .expect("certificate")
            .cert
            .pem();
        let text = key_refusal(cert.as_bytes());
        assert!(text.contains("certificate"), "{text}");
        let text = key_refusal(b"");
        assert!(text.contains("no PEM block"), "{text}");
        let text = key_refusal(b"not a key at all");
        assert!(
            text.contains("no PEM block") || text.contains("not PEM"),
            "{text}"
        );
        let two = [RSA_PUB, RSA_PUB].concat();
        let text = key_refusal(&two);
        assert!(text.contains("2 PEM blocks"), "{text}");
        let broken = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let text = key_refusal(broken);
        assert!(text.contains("not a valid public key"), "{text}");
    }

    #[test]
    fn key_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("viewcast-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = Auth::from_config(&AuthConfig::PublicKeyFile(missing.clone())).unwrap_err();
        assert!(matches!(err, AuthError::KeyFileUnreadable { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
        let private = dir.join("private.pem");
        std::fs::write(&private, RSA_KEY).unwrap();
        let err = Auth::from_config(&AuthConfig::PublicKeyFile(private.clone())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&private.display().to_string()), "{text}");
        assert!(text.contains("private key"), "{text}");
        let public = dir.join("public.pem");
        std::fs::write(&public, RSA_PUB).unwrap();
        let auth = Auth::from_config(&AuthConfig::PublicKeyFile(public)).expect("public key");
        assert_eq!(auth.algorithm(), "RS256");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_takes_one_key_and_hides_the_secret() {
        assert!(matches!(
            AuthConfig::from_options(Some("s".into()), Some("k.pem".into())),
            Err(AuthError::BothKeys)
        ));
        assert!(AuthConfig::from_options(None, None).unwrap().is_none());
        let secret = AuthConfig::from_options(Some("hunter2-hunter2".into()), None)
            .unwrap()
            .unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        let auth = Auth::from_config(&secret).unwrap();
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(matches!(
            Auth::from_config(&AuthConfig::Secret(String::new())),
            Err(AuthError::EmptySecret)
        ));
    }
}
