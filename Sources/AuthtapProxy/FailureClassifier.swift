import AuthtapDissector
import AuthtapModel
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// Maps structured NIO / BoringSSL errors to stored failure kinds. Never matches message text:
/// it reads errno values, NIO error cases and BoringSSL's packed reason codes.
enum FailureClassifier {
    struct Failure {
        var kind: ErrorKind
        var tls: TLSFailureReason?
        var detail: String
    }

    static func connect(_ error: any Error, host: String, port: Int) -> Failure {
        if let e = error as? NIOConnectionError {
            if e.connectionErrors.isEmpty {
                return Failure(kind: .dnsFailure, tls: nil, detail: "no address found for \(host)")
            }
            if let first = e.connectionErrors.first {
                return connect(first.error, host: host, port: port)
            }
        }
        if let e = error as? ChannelError, case .connectTimeout = e {
            return Failure(
                kind: .connectTimeout, tls: nil, detail: "no answer from \(host):\(port) within the connect timeout")
        }
        if let e = error as? IOError {
            switch e.errnoCode {
            case ECONNREFUSED:
                return Failure(kind: .connectionRefused, tls: nil, detail: "\(host):\(port) refused the connection")
            case ETIMEDOUT:
                return Failure(kind: .connectTimeout, tls: nil, detail: "connecting to \(host):\(port) timed out")
            case ENETUNREACH, EHOSTUNREACH:
                return Failure(
                    kind: .connectFailed, tls: nil, detail: "\(host):\(port) is unreachable (errno \(e.errnoCode))")
            default:
                return Failure(
                    kind: .connectFailed, tls: nil,
                    detail: "connecting to \(host):\(port) failed (errno \(e.errnoCode))")
            }
        }
        if error is SocketAddressError {
            return Failure(kind: .dnsFailure, tls: nil, detail: "no address found for \(host)")
        }
        return Failure(
            kind: .connectFailed, tls: nil, detail: "connecting to \(host):\(port) failed: \(type(of: error))")
    }

    /// BoringSSL packs (library, reason) in its error codes; `Error: <decimal> ...` carries the code.
    static func boringSSLReasons(_ error: NIOSSLError) -> [Int] {
        guard case .handshakeFailed(let inner) = error else { return [] }
        let stack: [BoringSSLInternalError]
        switch inner {
        case .sslError(let s), .unknownError(let s): stack = s
        default: return []
        }
        return stack.compactMap { e in
            let text = e.description
            guard text.hasPrefix("Error: ") else { return nil }
            let digits = text.dropFirst(7).prefix { $0.isNumber }
            guard let code = UInt32(digits) else { return nil }
            return Int(code & 0xFFF)
        }
    }

    static let alertOffset = 1000
    static let unsupportedProtocol = 240
    static let wrongVersionNumber = 247
    static let httpRequest = 156
    static let noSharedCipher = 184

    /// A handshake failure, as seen from one leg.
    static func tls(_ error: any Error, leg: String) -> (TLSFailureReason, String) {
        if let timeout = error as? ProxyTimeout, timeout.code == .tlsHandshake {
            return (
                .handshakeTimeout,
                "the \(leg) did not finish the TLS handshake within \(ProxyTimeout.seconds(timeout.seconds)) "
                    + "(--tls-handshake-timeout)"
            )
        }
        if let e = error as? NIOSSLError {
            switch e {
            case .uncleanShutdown:
                return (.closedDuringHandshake, "the \(leg) closed the connection during the TLS handshake")
            case .handshakeFailed(let inner):
                if case .sslError(let s) = inner, s.contains(where: { $0 == .eofDuringHandshake }) {
                    return (.closedDuringHandshake, "the \(leg) closed the connection during the TLS handshake")
                }
                if case .syscallError = inner {
                    return (.closedDuringHandshake, "the \(leg) reset the connection during the TLS handshake")
                }
                for reason in boringSSLReasons(e) {
                    if reason >= alertOffset && reason < alertOffset + 256 {
                        let alert = UInt8(reason - alertOffset)
                        let name = TLSDissector.alertName(alert)
                        if alert == 70 { return (.protocolVersion, "the \(leg) sent TLS alert protocol_version (70)") }
                        return (.handshakeAlert, "the \(leg) sent TLS alert \(name) (\(alert))")
                    }
                    switch reason {
                    case unsupportedProtocol: return (.protocolVersion, "no TLS version in common with the \(leg)")
                    case wrongVersionNumber:
                        return (.protocolVersion, "the \(leg) did not answer with TLS (wrong version number)")
                    case httpRequest: return (.protocolVersion, "the \(leg) sent plain HTTP where TLS was expected")
                    case noSharedCipher: return (.handshakeAlert, "no cipher suite in common with the \(leg)")
                    default: continue
                    }
                }
                return (.other, "TLS handshake with the \(leg) failed (BoringSSL reasons \(boringSSLReasons(e)))")
            default:
                return (.other, "TLS with the \(leg) failed: \(e)")
            }
        }
        if let e = error as? IOError, e.errnoCode == ECONNRESET {
            return (.closedDuringHandshake, "the \(leg) reset the connection during the TLS handshake")
        }
        return (.other, "TLS with the \(leg) failed: \(type(of: error))")
    }

    /// Whether an error mid-exchange is a reset (RST) rather than an orderly close.
    static func isReset(_ error: (any Error)?) -> Bool {
        if let e = error as? IOError { return e.errnoCode == ECONNRESET || e.errnoCode == EPIPE }
        return false
    }
}
