//! Plain UDP: `decode_datagram`, `decode_udp_body` and `decode_udp_ack` must
//! never panic. A plain datagram reads back exactly what `encode_udp_plain`
//! writes, a valid body what `encode_udp_body` writes, an ack what
//! `encode_udp_ack` writes; an encrypted envelope keeps tag + 1 bytes sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::encoded;
use psrt_protocol::{
    GCM_TAG_LEN, UDP_ACK_LEN, UdpAuth, UdpBody, decode_datagram, decode_udp_ack, decode_udp_body,
    encode_udp_ack, encode_udp_body, encode_udp_plain,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(dg) = decode_datagram(data) {
        match dg.auth {
            UdpAuth::Plain { login, password } => {
                let again = encoded(|out| encode_udp_plain(login, password, dg.body, out));
                assert_eq!(again, data);
                check_body(dg.body);
            }
            UdpAuth::Encrypted { sealed, .. } => {
                assert!(sealed.len() > GCM_TAG_LEN && dg.body.is_empty());
            }
        }
    }
    check_body(data);
    if let Ok(code) = decode_udp_ack(data) {
        assert_eq!(
            encoded(|out| encode_udp_ack(code, out)),
            data[..UDP_ACK_LEN]
        );
    }
});

fn check_body(body: &[u8]) {
    if let Ok(UdpBody {
        op,
        priority,
        publish: Ok(p),
    }) = decode_udp_body(body)
    {
        assert!(!p.topic.is_empty());
        let again = encoded(|out| encode_udp_body(op, priority, p.topic, p.data, out));
        assert_eq!(again, body);
    }
}
