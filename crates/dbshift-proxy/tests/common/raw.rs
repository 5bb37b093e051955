//! A minimal MySQL-protocol client for the tests, for what connectors do not expose or do not
//! ask for (session tracking, exact packets): plain TCP, mysql_native_password, packets read
//! and written one at a time. Packet types are `mysql_common`'s.

use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, CommonOkPacket, HandshakePacket, HandshakeResponse, OkPacket, OkPacketDeserializer,
};
use mysql_common::proto::MySerialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawConn {
    stream: TcpStream,
    pub caps: CapabilityFlags,
    /// The greeting's connection id and status flags.
    pub connection_id: u32,
    pub greeting_status: u16,
}

impl RawConn {
    /// Connect to 127.0.0.1:`port` as `user` with the default client capabilities plus
    /// `extra`; panics on a refusal.
    pub async fn connect(
        port: u16,
        user: &str,
        password: &str,
        db: Option<&str>,
        extra: CapabilityFlags,
    ) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = RawConn {
            stream,
            caps: CapabilityFlags::empty(),
            connection_id: 0,
            greeting_status: 0,
        };
        let (_, greeting) = c.read().await;
        let hs: HandshakePacket = ParseBuf(&greeting).parse(()).unwrap();
        let caps = (CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_MULTI_RESULTS
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_DEPRECATE_EOF
            | extra)
            & hs.capabilities();
        c.caps = caps;
        c.connection_id = hs.connection_id();
        c.greeting_status = hs.status_flags().bits();
        let answer = mysql_common::scramble::scramble_native(&hs.nonce(), password.as_bytes())
            .map(|a| a.to_vec())
            .unwrap_or_default();
        let resp = HandshakeResponse::new(
            Some(answer),
            (10, 11, 0),
            Some(user.as_bytes()),
            db.map(|d| d.as_bytes()),
            Some(AuthPlugin::MysqlNativePassword),
            caps,
            None,
            16 * 1024 * 1024,
        );
        let mut buf = Vec::new();
        resp.serialize(&mut buf);
        c.write(1, &buf).await;
        let (_, ok) = c.read().await;
        assert_eq!(
            ok.first(),
            Some(&0),
            "login refused: {}",
            String::from_utf8_lossy(&ok)
        );
        c
    }

    pub async fn read(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head).await.unwrap();
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await.unwrap();
        (head[3], payload)
    }

    pub async fn write(&mut self, seq: u8, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut out = len.to_le_bytes()[..3].to_vec();
        out.push(seq);
        out.extend_from_slice(payload);
        self.stream.write_all(&out).await.unwrap();
    }

    /// Run a statement that returns no rows; its OK packet's payload (panics on anything else).
    pub async fn query_ok(&mut self, sql: &str) -> Vec<u8> {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        self.write(0, &p).await;
        let (_, r) = self.read().await;
        assert_eq!(
            r.first(),
            Some(&0),
            "{sql}: {}",
            String::from_utf8_lossy(&r)
        );
        r
    }

    /// An OK packet's parts, as the client's capabilities read it.
    pub fn ok(&self, payload: &[u8]) -> OkPacket<'static> {
        let ok: OkPacketDeserializer<CommonOkPacket> = ParseBuf(payload).parse(self.caps).unwrap();
        ok.into_inner().into_owned()
    }

    pub async fn quit(mut self) {
        self.write(0, &[0x01]).await;
    }
}

impl RawConn {
    /// The connection itself, for tests that write bytes of their own.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}
