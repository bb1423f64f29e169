//! The loop-refusal rule: no echo to a privileged source port.
//!
//! A UDP echo answers whoever the source address says sent the datagram, and that address
//! can be forged. A forged datagram "from" another reflecting service (echo 7, daytime 13,
//! qotd 17, chargen 19, time 37, DNS 53, TFTP 69, NTP 123…) makes the two services answer
//! each other for ever: CVE-1999-0103 (echo and chargen), CVE-2024-2169 ("Loop DoS"). Those
//! services all listen on ports below 1024, while real clients send from ephemeral ports
//! (Linux: 32768–60999), so refusing sources below 1024 breaks the loop and no client. Port 0
//! is not a port anything can answer from; a datagram claiming it is forged.

/// Source ports below this are refused.
pub(crate) const MIN_SOURCE_PORT: u16 = 1024;

/// Whether a datagram from `port` must not be echoed: port 0 or any port below 1024.
pub(crate) fn is_loop_risk(port: u16) -> bool {
    port < MIN_SOURCE_PORT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_port_zero_and_privileged_ports_only() {
        for port in [0, 1, 7, 13, 17, 19, 37, 53, 69, 123, 1023] {
            assert!(is_loop_risk(port), "{port}");
        }
        for port in [1024, 7007, 32768, 60999, 65535] {
            assert!(!is_loop_risk(port), "{port}");
        }
    }
}
