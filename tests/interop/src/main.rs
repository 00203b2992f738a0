//! wzp-interop: drives a running wzp-relay with quinn, the QUIC stack that real
//! WarzonePhone clients use, and checks the room flow end to end.
//!
//! Usage: wzp-interop --addr 127.0.0.1:PORT [options] [SCENARIO]
//!
//! Scenarios:
//!   fanout (default)  A, B, C join room "interop-a" (C dials SNI "Interop-A", which the
//!                     relay must lowercase), D, E join "interop-b"; check the
//!                     CallAnswer of every join and every RoomUpdate; every client sends
//!                     N media datagrams; each must receive exactly the datagrams of the
//!                     other members of its own room; D leaves and E must be told.
//!   churn             A stays in room "interop-churn" while B joins and leaves --cycles
//!                     times (default 60): A must get every RoomUpdate, i.e. well over the
//!                     100 bidi streams of initial credit, so the relay has to honour and
//!                     wait for MAX_STREAMS credit from the client.
//!   selftest          only the built-in crypto/JSON checks against the spec's test vectors.
//!
//! Options:
//!   --addr ADDR               relay address (required unless SCENARIO is selftest)
//!   --packets N               datagrams sent per client (default 50)
//!   --cycles N                join/leave cycles in the churn scenario (default 60)
//!   --relay-fingerprint FP    expected relay identity fingerprint (xxxx:xxxx:...)
//!   --shared-endpoint         all clients share one UDP socket (the relay must demultiplex
//!                             by connection ID, as the desktop client needs)
//!   -v, --verbose             log every signal and datagram summary
//!
//! Exit status: 0 success, 1 failure (a message starting with "FAIL" says why), 2 usage.
//! Written for Rust 1.63 (Debian 12's toolchain).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::signature::KeyPair;
use ring::{agreement, digest, hkdf, rand as ring_rand, signature};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::timeout;

type Res<T> = Result<T, String>;

/// Cap on the whole scenario.
const OVERALL_LIMIT: Duration = Duration::from_secs(30);
/// Cap on one protocol step (handshake, one expected signal, ...).
const STEP: Duration = Duration::from_secs(5);
/// Largest signal frame a client accepts (the spec's limit).
const MAX_SIGNAL_LEN: usize = 1 << 20;
/// Size of every media datagram this program sends: 12-byte header + 48-byte payload.
const DGRAM_LEN: usize = 60;
const PAYLOAD_MAGIC: &[u8; 4] = b"WZPI";

static START: Mutex<Option<Instant>> = Mutex::new(None);

fn elapsed_ms() -> u128 {
    let mut start = START.lock().unwrap();
    match *start {
        Some(t) => t.elapsed().as_millis(),
        None => {
            *start = Some(Instant::now());
            0
        }
    }
}

/// Progress lines are muted while a scenario repeats a step many times.
static QUIET: AtomicBool = AtomicBool::new(false);

macro_rules! say {
    ($($arg:tt)*) => {
        if !QUIET.load(Ordering::Relaxed) {
            println!("[{:>6} ms] {}", elapsed_ms(), format!($($arg)*))
        }
    };
}

/// Await `fut` for at most `limit`; the error names the step.
async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> Res<F::Output> {
    match timeout(limit, fut).await {
        Ok(v) => Ok(v),
        Err(_) => Err(format!("timed out after {} ms: {}", limit.as_millis(), what)),
    }
}

// ---------------------------------------------------------------------------------------
// Crypto helpers (ring)

struct FixedLen(usize);

impl hkdf::KeyType for FixedLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 with no salt, as the upstream clients derive keys from a seed.
fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]);
    let prk = salt.extract(ikm);
    let info_parts = [info];
    let okm = prk
        .expand(&info_parts, FixedLen(32))
        .expect("HKDF expand of 32 bytes cannot fail");
    let mut out = [0u8; 32];
    okm.fill(&mut out).expect("HKDF fill of 32 bytes cannot fail");
    out
}

/// Identity fingerprint: SHA-256(pub)[0..16] as 8 groups of 4 lowercase hex digits.
fn fingerprint(public: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, public);
    let b = d.as_ref();
    let mut groups = Vec::with_capacity(8);
    for i in 0..8 {
        groups.push(format!("{:02x}{:02x}", b[2 * i], b[2 * i + 1]));
    }
    groups.join(":")
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{:02x}", b));
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let val = |c: u8| -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("bad hex digit in a built-in test vector"),
        }
    };
    s.chunks(2).map(|p| (val(p[0]) << 4) | val(p[1])).collect()
}

struct Identity {
    key: signature::Ed25519KeyPair,
    public: [u8; 32],
    fingerprint: String,
}

impl Identity {
    /// Upstream derivation: Ed25519 secret = HKDF(seed, "warzone-ed25519").
    fn from_seed(seed: &[u8; 32]) -> Identity {
        let secret = hkdf32(seed, b"warzone-ed25519");
        let key = signature::Ed25519KeyPair::from_seed_unchecked(&secret)
            .expect("any 32-byte Ed25519 seed is accepted");
        let mut public = [0u8; 32];
        public.copy_from_slice(key.public_key().as_ref());
        let fingerprint = fingerprint(&public);
        Identity { key, public, fingerprint }
    }
}

// ---------------------------------------------------------------------------------------
// Signal messages (serde, externally tagged like the upstream SignalMessage enum)

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct QualityProfile {
    codec: String,
    fec_ratio: f32,
    frame_duration_ms: u8,
    frames_per_block: u8,
}

fn profile(codec: &str, fec_ratio: f32, frame_duration_ms: u8, frames_per_block: u8) -> QualityProfile {
    QualityProfile {
        codec: codec.to_string(),
        fec_ratio,
        frame_duration_ms,
        frames_per_block,
    }
}

fn profile_good() -> QualityProfile {
    profile("Opus24k", 0.2, 20, 5)
}

/// What real clients offer: STUDIO_64K, 48K, 32K, GOOD, DEGRADED, CATASTROPHIC.
fn all_profiles() -> Vec<QualityProfile> {
    vec![
        profile("Opus64k", 0.1, 20, 5),
        profile("Opus48k", 0.1, 20, 5),
        profile("Opus32k", 0.1, 20, 5),
        profile_good(),
        profile("Opus6k", 0.5, 40, 10),
        profile("Codec2_1200", 1.0, 40, 8),
    ]
}

#[derive(Serialize, Debug)]
struct CallOffer {
    identity_pub: [u8; 32],
    ephemeral_pub: [u8; 32],
    signature: Vec<u8>,
    supported_profiles: Vec<QualityProfile>,
    alias: Option<String>,
}

#[derive(Serialize, Debug)]
enum Outgoing {
    CallOffer(CallOffer),
}

#[derive(Deserialize, Debug)]
struct CallAnswer {
    identity_pub: [u8; 32],
    ephemeral_pub: [u8; 32],
    signature: Vec<u8>,
    chosen_profile: QualityProfile,
}

#[derive(Deserialize, Debug, Clone)]
struct RoomParticipant {
    fingerprint: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    relay_label: Option<String>,
}

#[derive(Deserialize, Debug)]
struct RoomUpdate {
    count: u32,
    participants: Vec<RoomParticipant>,
}

#[derive(Deserialize, Debug)]
struct QualityDirective {
    recommended_profile: QualityProfile,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Debug)]
enum Incoming {
    CallAnswer(CallAnswer),
    RoomUpdate(RoomUpdate),
    QualityDirective(QualityDirective),
}

fn incoming_name(m: &Incoming) -> &'static str {
    match m {
        Incoming::CallAnswer(_) => "CallAnswer",
        Incoming::RoomUpdate(_) => "RoomUpdate",
        Incoming::QualityDirective(_) => "QualityDirective",
    }
}

fn frame_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out
}

fn short(s: &str) -> String {
    if s.len() <= 300 {
        s.to_string()
    } else {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

// ---------------------------------------------------------------------------------------
// Media datagrams

fn media_datagram(sender: u8, seq: u16) -> Vec<u8> {
    let mut d = Vec::with_capacity(DGRAM_LEN);
    // byte 0: V=0 T=0 CodecID=Opus24k(0) Q=0 FecRatio[6]=0; byte 1: FecRatio[5..0]=0
    d.push(0u8 << 2);
    d.push(0);
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&(u32::from(seq) * 20).to_be_bytes()); // timestamp, 20 ms frames
    d.extend_from_slice(&[0, 0, 0, 0]); // fec_block, fec_symbol, reserved, csrc_count
    d.extend_from_slice(PAYLOAD_MAGIC);
    d.push(sender);
    d.extend_from_slice(&seq.to_be_bytes());
    let mut i: u32 = 0;
    while d.len() < DGRAM_LEN {
        d.push((u32::from(sender) * 31 + u32::from(seq) * 7 + i) as u8);
        i += 1;
    }
    d
}

/// Which (sender, seq) a received datagram claims to be, if it is byte-exact.
fn parse_media(d: &[u8]) -> Result<(u8, u16), String> {
    if d.len() != DGRAM_LEN {
        return Err(format!("length {} (sent {})", d.len(), DGRAM_LEN));
    }
    if &d[12..16] != PAYLOAD_MAGIC {
        return Err(format!("no payload marker: {}", hex(d)));
    }
    let sender = d[16];
    let seq = u16::from_be_bytes([d[17], d[18]]);
    if d != media_datagram(sender, seq).as_slice() {
        return Err(format!(
            "bytes differ from what client #{} sent as seq {}: got {} want {}",
            sender,
            seq,
            hex(d),
            hex(&media_datagram(sender, seq))
        ));
    }
    Ok((sender, seq))
}

#[derive(Default)]
struct RxStats {
    /// sender index -> sequence numbers received, in arrival order
    per_sender: BTreeMap<u8, Vec<u16>>,
    invalid: Vec<String>,
    closed: Option<String>,
}

// ---------------------------------------------------------------------------------------
// One client

enum Event {
    Signal {
        stream_id: String,
        raw: String,
        msg: Result<Incoming, String>,
    },
    Error(String),
}

struct Client {
    name: String,
    idx: u8,
    room: String,
    id: Identity,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    events: mpsc::UnboundedReceiver<Event>,
    rx: Arc<Mutex<RxStats>>,
    /// Problems found on relay-opened streams after their frame was read (no FIN, extra bytes).
    stream_problems: Arc<Mutex<Vec<String>>>,
    verbose: bool,
}

struct SkipVerify;

impl rustls::client::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::Certificate,
        _intermediates: &[rustls::Certificate],
        _server_name: &rustls::ServerName,
        _scts: &mut dyn Iterator<Item = &[u8]>,
        _ocsp_response: &[u8],
        _now: std::time::SystemTime,
    ) -> Result<rustls::client::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::ServerCertVerified::assertion())
    }
}

fn client_config() -> Res<quinn::ClientConfig> {
    let mut crypto = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_custom_certificate_verifier(Arc::new(SkipVerify))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![b"wzp".to_vec()];
    let mut transport = quinn::TransportConfig::default();
    transport
        .datagram_receive_buffer_size(Some(65536))
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))))
        .receive_window(quinn::VarInt::from_u32(262_144))
        .stream_receive_window(quinn::VarInt::from_u32(65_536))
        .initial_rtt(Duration::from_millis(300));
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

fn new_endpoint() -> Res<quinn::Endpoint> {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    quinn::Endpoint::client(bind).map_err(|e| format!("cannot bind a client UDP socket: {}", e))
}

/// Read one signal frame (u32 BE length + JSON) from a relay-opened stream.
async fn read_frame(recv: &mut quinn::RecvStream) -> Res<Vec<u8>> {
    let mut len_buf = [0u8; 4];
    within("signal length prefix", STEP, recv.read_exact(&mut len_buf))
        .await?
        .map_err(|e| format!("reading the length prefix: {}", e))?;
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > MAX_SIGNAL_LEN {
        return Err(format!("signal length {} exceeds 1 MiB", len));
    }
    let mut body = vec![0u8; len];
    within("signal body", STEP, recv.read_exact(&mut body))
        .await?
        .map_err(|e| format!("reading a {}-byte signal body: {}", len, e))?;
    Ok(body)
}

/// Accepts the relay's bidi streams in order (quinn hands them out by stream ID) and
/// forwards each frame, parsed, to the scenario. Ends when the connection ends.
fn spawn_signal_reader(
    name: String,
    conn: quinn::Connection,
    tx: mpsc::UnboundedSender<Event>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        loop {
            let (send, mut recv) = match conn.accept_bi().await {
                Ok(pair) => pair,
                Err(e) => {
                    let _ = tx.send(Event::Error(format!("connection ended: {}", e)));
                    return;
                }
            };
            // Nothing is ever sent back on a signal stream: finish our half right away.
            drop(send);
            let stream_id = format!("{}", recv.id());
            let body = match read_frame(&mut recv).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Event::Error(format!("relay stream {}: {}", stream_id, e)));
                    continue;
                }
            };
            let raw = String::from_utf8_lossy(&body).into_owned();
            let msg = serde_json::from_slice::<Incoming>(&body).map_err(|e| e.to_string());
            let _ = tx.send(Event::Signal {
                stream_id: stream_id.clone(),
                raw,
                msg,
            });
            // After the frame the relay must FIN its half, with no extra bytes.
            let problems = problems.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let mut extra = [0u8; 64];
                match timeout(Duration::from_secs(3), recv.read(&mut extra)).await {
                    Ok(Ok(None)) => {}
                    Ok(Ok(Some(n))) => problems.lock().unwrap().push(format!(
                        "{}: relay stream {} has {} extra byte(s) after the signal frame",
                        name, stream_id, n
                    )),
                    Ok(Err(quinn::ReadError::ConnectionLost(_))) => {}
                    Ok(Err(e)) => problems.lock().unwrap().push(format!(
                        "{}: relay stream {} ended with an error after the frame: {}",
                        name, stream_id, e
                    )),
                    Err(_) => problems.lock().unwrap().push(format!(
                        "{}: relay stream {} was not finished (no FIN within 3 s after the frame)",
                        name, stream_id
                    )),
                }
            });
        }
    });
}

fn spawn_datagram_reader(conn: quinn::Connection, rx: Arc<Mutex<RxStats>>) {
    tokio::spawn(async move {
        loop {
            match conn.read_datagram().await {
                Ok(d) => {
                    let mut st = rx.lock().unwrap();
                    match parse_media(&d) {
                        Ok((sender, seq)) => st.per_sender.entry(sender).or_insert_with(Vec::new).push(seq),
                        Err(e) => st.invalid.push(e),
                    }
                }
                Err(e) => {
                    rx.lock().unwrap().closed = Some(e.to_string());
                    return;
                }
            }
        }
    });
}

impl Client {
    /// QUIC handshake with SNI = room, then CallOffer; checks the CallAnswer.
    /// Returns the relay's identity public key from the answer.
    async fn join(
        name: &str,
        idx: u8,
        room: &str,
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
        verbose: bool,
    ) -> Res<(Client, [u8; 32], [u8; 32])> {
        let seed = [0x10 + idx; 32];
        let id = Identity::from_seed(&seed);
        say!("{}: connecting to {} (SNI {}), fingerprint {}", name, addr, room, id.fingerprint);
        let connecting = endpoint
            .connect_with(client_config()?, addr, room)
            .map_err(|e| format!("{}: connect: {}", name, e))?;
        let conn = within(&format!("{}: QUIC handshake", name), STEP, connecting)
            .await?
            .map_err(|e| format!("{}: QUIC handshake failed: {}", name, e))?;
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol);
        if alpn.as_deref() != Some(&b"wzp"[..]) {
            return Err(format!("{}: negotiated ALPN is {:?}, expected \"wzp\"", name, alpn));
        }
        say!("{}: QUIC connected, ALPN wzp", name);

        let (tx, events) = mpsc::unbounded_channel();
        let stream_problems = Arc::new(Mutex::new(Vec::new()));
        let rx = Arc::new(Mutex::new(RxStats::default()));
        spawn_signal_reader(name.to_string(), conn.clone(), tx, stream_problems.clone());
        spawn_datagram_reader(conn.clone(), rx.clone());

        let mut client = Client {
            name: name.to_string(),
            idx,
            // The relay lowercases the SNI (as rustls does upstream): that is the room.
            room: room.to_ascii_lowercase(),
            id,
            endpoint,
            conn,
            events,
            rx,
            stream_problems,
            verbose,
        };

        // CallOffer: X25519 ephemeral, Ed25519 signature over ephemeral_pub || "call-offer".
        let rng = ring_rand::SystemRandom::new();
        let eph = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng)
            .map_err(|_| format!("{}: X25519 key generation failed", name))?;
        let eph_pub_key = eph
            .compute_public_key()
            .map_err(|_| format!("{}: X25519 public key failed", name))?;
        let mut eph_pub = [0u8; 32];
        eph_pub.copy_from_slice(eph_pub_key.as_ref());
        let mut signed = eph_pub.to_vec();
        signed.extend_from_slice(b"call-offer");
        let sig = client.id.key.sign(&signed);
        let offer = Outgoing::CallOffer(CallOffer {
            identity_pub: client.id.public,
            ephemeral_pub: eph_pub,
            signature: sig.as_ref().to_vec(),
            supported_profiles: all_profiles(),
            alias: Some(name.to_string()),
        });
        let json = serde_json::to_vec(&offer).map_err(|e| format!("{}: encoding CallOffer: {}", name, e))?;
        client.send_signal(&json).await?;
        say!("{}: CallOffer sent ({} bytes)", name, json.len());

        let answer = match client.next_signal("CallAnswer", STEP).await? {
            Incoming::CallAnswer(a) => a,
            other => {
                return Err(format!(
                    "{}: first relay signal is {}, expected CallAnswer",
                    name,
                    incoming_name(&other)
                ))
            }
        };
        if answer.signature.len() != 64 {
            return Err(format!(
                "{}: CallAnswer signature is {} bytes, expected 64",
                name,
                answer.signature.len()
            ));
        }
        let mut answer_signed = answer.ephemeral_pub.to_vec();
        answer_signed.extend_from_slice(b"call-answer");
        signature::UnparsedPublicKey::new(&signature::ED25519, &answer.identity_pub[..])
            .verify(&answer_signed, &answer.signature)
            .map_err(|_| {
                format!(
                    "{}: CallAnswer signature does not verify under its identity_pub {} over ephemeral_pub || \"call-answer\"",
                    name,
                    hex(&answer.identity_pub)
                )
            })?;
        if answer.chosen_profile != profile_good() {
            return Err(format!(
                "{}: CallAnswer chosen_profile is {:?}, expected GOOD {:?}",
                name,
                answer.chosen_profile,
                profile_good()
            ));
        }
        // The relay's ephemeral key must be a usable X25519 public key (like the client does).
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, answer.ephemeral_pub);
        agreement::agree_ephemeral(eph, &peer, (), |shared| {
            if shared.iter().all(|b| *b == 0) {
                Err(())
            } else {
                Ok(())
            }
        })
        .map_err(|_| format!("{}: CallAnswer ephemeral_pub is not a usable X25519 key", name))?;
        say!(
            "{}: CallAnswer OK (relay fingerprint {}, signature verified, profile GOOD)",
            name,
            fingerprint(&answer.identity_pub)
        );
        Ok((client, answer.identity_pub, answer.ephemeral_pub))
    }

    async fn send_signal(&self, json: &[u8]) -> Res<()> {
        let name = &self.name;
        let (mut send, recv) = within(&format!("{}: open_bi", name), STEP, self.conn.open_bi())
            .await?
            .map_err(|e| format!("{}: open_bi: {}", name, e))?;
        // Like the real clients: the receive half of our own signal stream is never read.
        drop(recv);
        within(&format!("{}: writing a signal", name), STEP, send.write_all(&frame_json(json)))
            .await?
            .map_err(|e| format!("{}: writing a signal: {}", name, e))?;
        // finish() resolves once the relay has acknowledged the data and FIN. A relay that
        // has read the whole frame may legitimately answer STOP_SENDING(0) instead.
        match within(&format!("{}: finishing a signal stream", name), STEP, send.finish()).await? {
            Ok(()) => Ok(()),
            Err(quinn::WriteError::Stopped(code)) if code == quinn::VarInt::from_u32(0) => Ok(()),
            Err(e) => Err(format!("{}: finishing a signal stream: {}", name, e)),
        }
    }

    /// The next signal from the relay, within `limit`.
    async fn next_signal(&mut self, expecting: &str, limit: Duration) -> Res<Incoming> {
        let what = format!("{}: waiting for {}", self.name, expecting);
        let ev = within(&what, limit, self.events.recv()).await?;
        match ev {
            None => Err(format!("{}: signal reader ended while waiting for {}", self.name, expecting)),
            Some(Event::Error(e)) => Err(format!("{}: while waiting for {}: {}", self.name, expecting, e)),
            Some(Event::Signal { stream_id, raw, msg }) => match msg {
                Ok(m) => {
                    if self.verbose {
                        say!("{}: stream {}: {}", self.name, stream_id, short(&raw));
                    }
                    Ok(m)
                }
                Err(e) => Err(format!(
                    "{}: relay stream {} carries a signal this client cannot parse ({}): {}",
                    self.name,
                    stream_id,
                    e,
                    short(&raw)
                )),
            },
        }
    }

    /// The next signal must be a RoomUpdate listing exactly `expected` (fingerprint, alias)
    /// in join order.
    async fn expect_room_update(&mut self, expected: &[(String, String)]) -> Res<()> {
        let what = format!("RoomUpdate with count {}", expected.len());
        let upd = match self.next_signal(&what, STEP).await? {
            Incoming::RoomUpdate(u) => u,
            other => {
                return Err(format!(
                    "{}: expected {}, got {}",
                    self.name,
                    what,
                    incoming_name(&other)
                ))
            }
        };
        let listed: Vec<String> = upd
            .participants
            .iter()
            .map(|p| format!("{}({})", p.alias.clone().unwrap_or_else(|| "null".to_string()), p.fingerprint))
            .collect();
        let want: Vec<String> = expected.iter().map(|(fp, a)| format!("{}({})", a, fp)).collect();
        if upd.count as usize != expected.len() {
            return Err(format!(
                "{}: RoomUpdate count {} (participants {:?}), expected count {} {:?}",
                self.name,
                upd.count,
                listed,
                expected.len(),
                want
            ));
        }
        if listed != want {
            return Err(format!(
                "{}: RoomUpdate participants {:?}, expected (join order) {:?}",
                self.name, listed, want
            ));
        }
        for p in &upd.participants {
            if p.relay_label.is_some() {
                return Err(format!(
                    "{}: local participant {} has relay_label {:?}, expected null",
                    self.name, p.fingerprint, p.relay_label
                ));
            }
        }
        say!("{}: RoomUpdate count {} {:?}", self.name, upd.count, want);
        Ok(())
    }

    /// Fails if a signal (or a reader error) is waiting that nobody expected.
    fn expect_no_pending_signal(&mut self) -> Res<()> {
        match self.events.try_recv() {
            Ok(Event::Signal { stream_id, raw, .. }) => Err(format!(
                "{}: unexpected extra signal on relay stream {}: {}",
                self.name,
                stream_id,
                short(&raw)
            )),
            Ok(Event::Error(e)) => Err(format!("{}: {}", self.name, e)),
            Err(_) => Ok(()),
        }
    }

    fn participant(&self) -> (String, String) {
        (self.id.fingerprint.clone(), self.name.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Scenario "fanout"

struct Opts {
    addr: Option<SocketAddr>,
    scenario: String,
    packets: u16,
    cycles: u32,
    relay_fp: Option<String>,
    shared_endpoint: bool,
    verbose: bool,
}

async fn fanout(o: &Opts) -> Res<()> {
    let addr = match o.addr {
        Some(a) => a,
        None => return Err("--addr is required".to_string()),
    };
    let shared = if o.shared_endpoint { Some(new_endpoint()?) } else { None };
    let plan: [(&str, &str); 5] = [
        ("A", "interop-a"),
        ("B", "interop-a"),
        // C dials with a mixed-case SNI: the relay must lowercase it (spec 1.2), so C
        // lands in the same room as A and B.
        ("C", "Interop-A"),
        ("D", "interop-b"),
        ("E", "interop-b"),
    ];
    let mut clients: Vec<Client> = Vec::new();
    let mut relay_pub: Option<[u8; 32]> = None;
    let mut ephemerals: Vec<[u8; 32]> = Vec::new();

    // Joins, one after the other; everyone already in the room must see each join.
    for (i, (name, room)) in plan.iter().enumerate() {
        let ep = match &shared {
            Some(e) => e.clone(),
            None => new_endpoint()?,
        };
        let (mut c, rp, re) = Client::join(name, i as u8, room, addr, ep, o.verbose).await?;
        match relay_pub {
            None => {
                let fp = fingerprint(&rp);
                if let Some(want) = &o.relay_fp {
                    if &fp != want {
                        return Err(format!(
                            "{}: CallAnswer identity fingerprint {} differs from the relay's logged identity {}",
                            name, fp, want
                        ));
                    }
                }
                relay_pub = Some(rp);
            }
            Some(prev) => {
                if prev != rp {
                    return Err(format!(
                        "{}: CallAnswer identity_pub {} differs from the earlier answers' {}",
                        name,
                        hex(&rp),
                        hex(&prev)
                    ));
                }
            }
        }
        if ephemerals.contains(&re) {
            return Err(format!(
                "{}: the relay reused an ephemeral_pub {} from an earlier CallAnswer",
                name,
                hex(&re)
            ));
        }
        ephemerals.push(re);

        let mut members: Vec<(String, String)> = clients
            .iter()
            .filter(|m| m.room == c.room)
            .map(|m| m.participant())
            .collect();
        members.push(c.participant());
        c.expect_room_update(&members).await?;
        for m in clients.iter_mut().filter(|m| m.room == c.room) {
            m.expect_room_update(&members).await?;
        }
        clients.push(c);
    }
    // No one may have heard of the other room's joins.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in clients.iter_mut() {
        c.expect_no_pending_signal()?;
    }

    // Media: every client sends N datagrams at ~100/s, all at once.
    for c in &clients {
        match c.conn.max_datagram_size() {
            Some(n) if n >= DGRAM_LEN => {}
            other => {
                return Err(format!(
                    "{}: cannot send {}-byte datagrams: max_datagram_size() = {:?} (does the relay advertise max_datagram_frame_size?)",
                    c.name, DGRAM_LEN, other
                ))
            }
        }
    }
    say!("media: every client sends {} datagrams of {} bytes at ~100/s", o.packets, DGRAM_LEN);
    let mut senders = Vec::new();
    for c in &clients {
        let conn = c.conn.clone();
        let idx = c.idx;
        let name = c.name.clone();
        let n = o.packets;
        senders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for seq in 0..n {
                tick.tick().await;
                if let Err(e) = conn.send_datagram(Bytes::from(media_datagram(idx, seq))) {
                    return Err(format!("{}: send_datagram seq {}: {}", name, seq, e));
                }
            }
            Ok(())
        }));
    }
    for s in senders {
        let r = within("media senders", Duration::from_secs(10), s).await?;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("media sender task failed: {}", e)),
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let mut problems = Vec::new();
    for r in &clients {
        let st = r.rx.lock().unwrap();
        let mut line = Vec::new();
        for s in &clients {
            let got = st.per_sender.get(&s.idx).cloned().unwrap_or_default();
            let want = if s.room == r.room && s.idx != r.idx { o.packets as usize } else { 0 };
            let mut uniq = got.clone();
            uniq.sort_unstable();
            uniq.dedup();
            line.push(format!("{}:{}", s.name, got.len()));
            if got.len() != want || uniq.len() != got.len() {
                let missing: Vec<u16> = if want > 0 {
                    (0..o.packets).filter(|q| !uniq.contains(q)).collect()
                } else {
                    Vec::new()
                };
                problems.push(format!(
                    "{} received {} datagrams from {} (expected {}; {} duplicates; missing seqs {:?})",
                    r.name,
                    got.len(),
                    s.name,
                    want,
                    got.len() - uniq.len(),
                    missing
                ));
            }
        }
        for (k, v) in &st.per_sender {
            if usize::from(*k) >= clients.len() {
                problems.push(format!("{} received {} datagrams from unknown sender #{}", r.name, v.len(), k));
            }
        }
        for e in st.invalid.iter().take(3) {
            problems.push(format!("{} received a corrupted datagram: {}", r.name, e));
        }
        if st.invalid.len() > 3 {
            problems.push(format!("{} received {} corrupted datagrams in all", r.name, st.invalid.len()));
        }
        if let Some(e) = &st.closed {
            problems.push(format!("{}: connection closed during the media phase: {}", r.name, e));
        }
        say!("media: {} received from [{}]", r.name, line.join(" "));
    }
    if !problems.is_empty() {
        return Err(format!("media fan-out wrong:\n  {}", problems.join("\n  ")));
    }
    say!("media: every client got exactly the other same-room members' datagrams");

    // D leaves: E must get RoomUpdate [E]; nobody else hears anything.
    for c in clients.iter_mut() {
        c.expect_no_pending_signal()?;
    }
    {
        let d = &clients[3];
        say!("D: closing its connection (code 0, \"hangup\")");
        d.conn.close(quinn::VarInt::from_u32(0), b"hangup");
    }
    let e_member = clients[4].participant();
    clients[4].expect_room_update(&[e_member]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in clients.iter_mut().filter(|c| c.name != "D") {
        c.expect_no_pending_signal()?;
    }

    // Each relay signal stream must have been finished cleanly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut stream_problems = Vec::new();
    for c in &clients {
        stream_problems.extend(c.stream_problems.lock().unwrap().iter().cloned());
    }
    if !stream_problems.is_empty() {
        return Err(format!("relay signal streams:\n  {}", stream_problems.join("\n  ")));
    }

    // Leave cleanly so the relay sees every close before it is stopped.
    for c in &clients {
        if let Some(e) = c.conn.close_reason() {
            match e {
                quinn::ConnectionError::LocallyClosed => {}
                other => {
                    return Err(format!("{}: connection was closed by the relay: {}", c.name, other));
                }
            }
        }
    }
    for c in &clients {
        if c.name != "D" {
            c.conn.close(quinn::VarInt::from_u32(0), b"hangup");
        }
    }
    for c in &clients {
        let _ = timeout(Duration::from_secs(2), c.endpoint.wait_idle()).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenario "churn"

async fn churn(o: &Opts) -> Res<()> {
    let addr = match o.addr {
        Some(a) => a,
        None => return Err("--addr is required".to_string()),
    };
    let room = "interop-churn";
    let shared = if o.shared_endpoint { Some(new_endpoint()?) } else { None };
    let ep = match &shared {
        Some(e) => e.clone(),
        None => new_endpoint()?,
    };
    let (mut a, _, _) = Client::join("A", 0, room, addr, ep, o.verbose).await?;
    let a_member = a.participant();
    a.expect_room_update(&[a_member.clone()]).await?;
    say!("churn: B joins and leaves {} times (progress every 10)", o.cycles);
    for i in 0..o.cycles {
        QUIET.store(!o.verbose, Ordering::Relaxed);
        let ep = match &shared {
            Some(e) => e.clone(),
            None => new_endpoint()?,
        };
        let step = async {
            let (mut b, _, _) = Client::join("B", 1, room, addr, ep.clone(), o.verbose).await?;
            let both = [a_member.clone(), b.participant()];
            b.expect_room_update(&both).await?;
            a.expect_room_update(&both).await?;
            b.conn.close(quinn::VarInt::from_u32(0), b"hangup");
            a.expect_room_update(&[a_member.clone()]).await?;
            let problems = b.stream_problems.lock().unwrap().clone();
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
            Ok::<(), String>(())
        };
        let r = step.await;
        QUIET.store(false, Ordering::Relaxed);
        if let Err(e) = r {
            return Err(format!(
                "cycle {} of {} (A has been sent {} relay streams so far): {}",
                i + 1,
                o.cycles,
                1 + 2 * i + 1,
                e
            ));
        }
        if shared.is_none() {
            let _ = timeout(Duration::from_millis(500), ep.wait_idle()).await;
        }
        if (i + 1) % 10 == 0 {
            say!("churn: {} cycles done, A has read {} RoomUpdates", i + 1, 2 * (i + 1) + 1);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.expect_no_pending_signal()?;
    let problems = a.stream_problems.lock().unwrap().clone();
    if !problems.is_empty() {
        return Err(format!("relay signal streams:\n  {}", problems.join("\n  ")));
    }
    if let Some(e) = a.conn.close_reason() {
        return Err(format!("A: connection was closed by the relay: {}", e));
    }
    a.conn.close(quinn::VarInt::from_u32(0), b"hangup");
    let _ = timeout(Duration::from_secs(2), a.endpoint.wait_idle()).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Self test against the spec's test vectors (checks this client, not the relay)

fn selftest() -> Res<()> {
    let seed = [0x42u8; 32];
    let secret = hkdf32(&seed, b"warzone-ed25519");
    if hex(&secret) != "c420846dcde8fecab9b1fba9ce5186e5dad835391ad615d2f42cfdd6f52033f9" {
        return Err(format!("HKDF ed25519 secret vector mismatch: {}", hex(&secret)));
    }
    let id = Identity::from_seed(&seed);
    if hex(&id.public) != "a37a947ca8cc01976b7859cfb52eec500627d4c1a1e13c5ee6f7aa3b5c706909" {
        return Err(format!("ed25519 public vector mismatch: {}", hex(&id.public)));
    }
    if id.fingerprint != "518e:b935:62fa:9e34:e59c:28b6:7fc2:d384" {
        return Err(format!("fingerprint vector mismatch: {}", id.fingerprint));
    }
    if fingerprint(&[0u8; 32]) != "6668:7aad:f862:bd77:6c8f:c18b:8e9f:8e20" {
        return Err("fingerprint(zero key) vector mismatch".to_string());
    }
    let e = unhex("7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13");
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&e);
    let mut msg = eph.to_vec();
    msg.extend_from_slice(b"call-offer");
    let sig = id.key.sign(&msg);
    let want_sig = "420d9b9ea1d77724c83ec5017dbcaf48e8342323ca7c51384796bddda2d780ca\
                    7112f4ad831c070ec75012cc02e5061afd44beb521634ea1f137f84645423c0d";
    if hex(sig.as_ref()) != want_sig {
        return Err(format!("CallOffer signature vector mismatch: {}", hex(sig.as_ref())));
    }
    signature::UnparsedPublicKey::new(&signature::ED25519, &id.public[..])
        .verify(&msg, sig.as_ref())
        .map_err(|_| "own signature does not verify".to_string())?;
    let offer = Outgoing::CallOffer(CallOffer {
        identity_pub: id.public,
        ephemeral_pub: eph,
        signature: sig.as_ref().to_vec(),
        supported_profiles: vec![profile_good()],
        alias: Some("alice".to_string()),
    });
    let json = serde_json::to_string(&offer).map_err(|e| e.to_string())?;
    let want_json = concat!(
        r#"{"CallOffer":{"identity_pub":[163,122,148,124,168,204,1,151,107,120,89,207,181,46,236,80,6,39,212,193,161,225,60,94,230,247,170,59,92,112,105,9],"#,
        r#""ephemeral_pub":[123,78,144,155,190,127,254,68,196,101,162,32,3,125,96,142,227,88,151,211,30,249,114,240,127,116,137,44,176,247,63,19],"#,
        r#""signature":[66,13,155,158,161,215,119,36,200,62,197,1,125,188,175,72,232,52,35,35,202,124,81,56,71,150,189,221,162,215,128,202,113,18,244,173,131,28,7,14,199,80,18,204,2,229,6,26,253,68,190,181,33,99,78,161,241,55,248,70,69,66,60,13],"#,
        r#""supported_profiles":[{"codec":"Opus24k","fec_ratio":0.2,"frame_duration_ms":20,"frames_per_block":5}],"alias":"alice"}}"#
    );
    if json != want_json {
        return Err(format!("CallOffer JSON differs from the spec's example:\n  got  {}\n  want {}", json, want_json));
    }
    // Parsing: a RoomUpdate with missing/null optional fields, a QualityDirective without reason.
    let ru: Incoming = serde_json::from_str(
        r#"{"RoomUpdate":{"count":2,"participants":[{"fingerprint":"aaaa:bbbb","alias":"A","relay_label":null},{"fingerprint":""}]}}"#,
    )
    .map_err(|e| format!("RoomUpdate parse: {}", e))?;
    match ru {
        Incoming::RoomUpdate(u) if u.count == 2 && u.participants.len() == 2 => {}
        _ => return Err("RoomUpdate parse gave the wrong value".to_string()),
    }
    let qd: Incoming = serde_json::from_str(
        r#"{"QualityDirective":{"recommended_profile":{"codec":"Opus64k","fec_ratio":0.1,"frame_duration_ms":20,"frames_per_block":5}}}"#,
    )
    .map_err(|e| format!("QualityDirective parse: {}", e))?;
    match qd {
        Incoming::QualityDirective(q) if q.reason.is_none() && q.recommended_profile.codec == "Opus64k" => {}
        _ => return Err("QualityDirective parse gave the wrong value".to_string()),
    }
    // Media header: the spec's ComfortNoise vector layout, and our own round trip.
    let d = media_datagram(3, 0x1234);
    if hex(&d[..12]) != "0000123400016c1000000000" {
        return Err(format!("media header layout wrong: {}", hex(&d[..12])));
    }
    if parse_media(&d) != Ok((3, 0x1234)) {
        return Err("media datagram round trip failed".to_string());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn usage() -> ! {
    eprintln!(
        "usage: wzp-interop --addr IP:PORT [--packets N] [--relay-fingerprint FP] [--cycles N] [--shared-endpoint] [-v] [fanout|churn|selftest]"
    );
    std::process::exit(2);
}

fn parse_args() -> Opts {
    let mut o = Opts {
        addr: None,
        scenario: "fanout".to_string(),
        packets: 50,
        cycles: 60,
        relay_fp: None,
        shared_endpoint: false,
        verbose: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => {
                let v = args.next().unwrap_or_else(|| usage());
                match v.parse() {
                    Ok(x) => o.addr = Some(x),
                    Err(_) => {
                        eprintln!("wzp-interop: bad --addr {:?}", v);
                        usage()
                    }
                }
            }
            "--packets" => {
                let v = args.next().unwrap_or_else(|| usage());
                match v.parse::<u16>() {
                    Ok(n) if n > 0 => o.packets = n,
                    _ => {
                        eprintln!("wzp-interop: bad --packets {:?}", v);
                        usage()
                    }
                }
            }
            "--cycles" => {
                let v = args.next().unwrap_or_else(|| usage());
                match v.parse::<u32>() {
                    Ok(n) if n > 0 => o.cycles = n,
                    _ => {
                        eprintln!("wzp-interop: bad --cycles {:?}", v);
                        usage()
                    }
                }
            }
            "--relay-fingerprint" => o.relay_fp = Some(args.next().unwrap_or_else(|| usage())),
            "--shared-endpoint" => o.shared_endpoint = true,
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => usage(),
            s if !s.starts_with('-') => o.scenario = s.to_string(),
            _ => {
                eprintln!("wzp-interop: unknown option {:?}", a);
                usage()
            }
        }
    }
    o
}

fn main() {
    let o = parse_args();
    elapsed_ms();
    if let Err(e) = selftest() {
        println!("FAIL (client self-test, not a relay problem): {}", e);
        std::process::exit(1);
    }
    if o.scenario == "selftest" {
        println!("PASS selftest");
        return;
    }
    if o.scenario != "fanout" && o.scenario != "churn" {
        eprintln!("wzp-interop: unknown scenario {:?}", o.scenario);
        usage();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("FAIL: cannot start the tokio runtime: {}", e);
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        let run = async {
            if o.scenario == "churn" {
                churn(&o).await
            } else {
                fanout(&o).await
            }
        };
        match timeout(OVERALL_LIMIT, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("scenario did not finish within {} s", OVERALL_LIMIT.as_secs())),
        }
    });
    match result {
        Ok(()) => {
            if o.scenario == "churn" {
                println!(
                    "PASS churn: {} join/leave cycles, {} RoomUpdates to the client that stayed",
                    o.cycles,
                    2 * o.cycles + 1
                );
            } else {
                println!(
                    "PASS fanout: 5 clients, 2 rooms, {} datagrams per client{}",
                    o.packets,
                    if o.shared_endpoint { ", one shared UDP socket" } else { "" }
                );
            }
            rt.shutdown_timeout(Duration::from_millis(100));
            std::process::exit(0);
        }
        Err(e) => {
            println!("FAIL {}: {}", o.scenario, e);
            rt.shutdown_timeout(Duration::from_millis(100));
            std::process::exit(1);
        }
    }
}
