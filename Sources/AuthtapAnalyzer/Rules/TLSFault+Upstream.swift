import AuthtapModel
import Foundation

extension TLSFault {
    /// Title, explanation and fix for a failed handshake with the upstream server, by reason.
    func upstreamProse(_ reason: TLSFailureReason, _ f: ExchangeFacts) -> (String, String, String) {
        certificateProse(reason, f) ?? handshakeProse(reason, f)
    }

    /// The upstream's certificate was refused; nil for a failure that is not about the certificate.
    private func certificateProse(_ reason: TLSFailureReason, _ f: ExchangeFacts) -> (String, String, String)? {
        let host = f.ex.host
        let cert = f.ex.upstreamTLS?.peerCertificate
        let date = { (d: Date) in ISO8601DateFormatter().string(from: d) }
        switch reason {
        case .untrustedIssuer:
            let certText = cert.map {
                "subject \($0.subject), issuer \($0.issuer), SANs \($0.sans.joined(separator: ", ")), "
                    + "valid \(date($0.notBefore)) to \(date($0.notAfter))"
            }
            return (
                "Upstream certificate is not trusted",
                """
                The certificate of \(host) does not chain to a trusted root\(certText.map { " (\($0))" } ?? ""): \
                a private CA, a self-signed certificate, or a server that does not send its intermediate.
                """,
                """
                If the server uses a private CA, give it to authtap with --upstream-ca FILE (and to your app). \
                If it is public, fix the server to send the full chain.
                """
            )
        case .expired:
            return (
                "Upstream certificate has expired",
                "The certificate of \(host) has expired\(cert.map { " on \(date($0.notAfter))" } ?? "").",
                "Renew the server's certificate (check the renewal job: certbot, cert-manager)."
            )
        case .notYetValid:
            return (
                "Upstream certificate is not yet valid",
                """
                The certificate of \(host) is valid only from \(cert.map { date($0.notBefore) } ?? "a later date"): \
                a clock problem here or on the issuer.
                """, "Check this machine's clock, then the certificate's issuance."
            )
        case .hostnameMismatch:
            return (
                "Upstream certificate is for another host",
                "The certificate presented for \(host) covers "
                    + "\(cert?.sans.joined(separator: ", ") ?? "other names").",
                "Use the host name the certificate covers, or get a certificate with \(host) in its SANs."
            )
        case .protocolVersion, .handshakeAlert, .closedDuringHandshake, .handshakeTimeout, .other:
            return nil
        }
    }

    /// The handshake itself failed: version, alert, close, timeout.
    private func handshakeProse(_ reason: TLSFailureReason, _ f: ExchangeFacts) -> (String, String, String) {
        let host = f.ex.host
        let detail = f.ex.errorDetail ?? "no detail"
        switch reason {
        case .protocolVersion:
            return (
                "Upstream did not answer with a TLS version authtap accepts",
                """
                The handshake with \(host):\(f.ex.port) failed on the protocol version: either the port does not \
                speak TLS at all (plain HTTP on a TLS port is the usual cause), or the server only offers TLS 1.0/1.1.
                """,
                """
                Check the URL's scheme and port (http:// vs https://); if the server really is TLS, enable TLS 1.2 \
                or 1.3 on it.
                """
            )
        case .handshakeAlert:
            return (
                "Upstream aborted the handshake with an alert",
                "\(host) sent a TLS alert during the handshake: \(detail).",
                "Check the server's TLS configuration (cipher suites, required client certificates, SNI)."
            )
        case .closedDuringHandshake:
            return (
                "Upstream reset the connection during the TLS handshake",
                """
                \(host) closed or reset the connection in the middle of the handshake: a middlebox dropping TLS, \
                a server that is not TLS on this port, or an SNI-based block.
                """,
                """
                Check that the port speaks TLS, and firewalls between here and the server; run authtap capture \
                to see the packets.
                """
            )
        case .handshakeTimeout:
            return (
                "Upstream did not finish the TLS handshake in time",
                """
                \(host):\(f.ex.port) accepted the TCP connection but did not complete the TLS handshake \
                (\(detail)): an overloaded server, a middlebox that swallows TLS, or a port that does not speak \
                TLS and waits for the client to talk first.
                """,
                """
                Check that the port speaks TLS and that nothing between here and the server holds the handshake; \
                raise --tls-handshake-timeout only if the server is known to be slow.
                """
            )
        case .other, .untrustedIssuer, .expired, .notYetValid, .hostnameMismatch:
            return (
                "Upstream TLS handshake failed", "The TLS handshake with \(host) failed: \(detail).",
                "Check the server's certificate and TLS configuration."
            )
        }
    }
}
