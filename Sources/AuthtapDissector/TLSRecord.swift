/// A sans-I/O dissector for the plaintext start of a TLS connection: records, ClientHello,
/// ServerHello and alerts. Pure: byte arrays in, values out.
public enum TLSDissector {
    public enum ContentType: UInt8, Sendable {
        case changeCipherSpec = 20, alert = 21, handshake = 22, applicationData = 23
    }

    public struct ClientHello: Sendable, Equatable {
        public var legacyVersion: UInt16
        public var serverName: String?
        public var alpn: [String]
        public var supportedVersions: [UInt16]
        public var cipherSuites: [UInt16]
    }

    public struct ServerHello: Sendable, Equatable {
        public var legacyVersion: UInt16
        public var cipherSuite: UInt16
        /// From supported_versions (TLS 1.3), else the legacy version.
        public var selectedVersion: UInt16
        public var alpn: String?
    }

    public struct Alert: Sendable, Equatable {
        public var level: UInt8
        public var description: UInt8
        public var name: String { TLSDissector.alertName(description) }
    }

    public enum Parsed: Sendable, Equatable {
        /// More bytes are needed.
        case incomplete
        /// The bytes are not a TLS record.
        case notTLS
        case clientHello(ClientHello)
        case serverHello(ServerHello)
        case alert(Alert)
        /// A well-formed record of another kind.
        case other(ContentType)
    }

    /// Parses the first record in `bytes`. `consumed` is the record length when complete.
    public static func parseFirstRecord(_ bytes: [UInt8]) -> (Parsed, consumed: Int) {
        guard let first = bytes.first else { return (.incomplete, 0) }
        guard let type = ContentType(rawValue: first) else { return (.notTLS, 0) }
        guard bytes.count >= 5 else {
            // A partial header can still be rejected early on the version byte.
            if bytes.count >= 2 && bytes[1] != 3 { return (.notTLS, 0) }
            return (.incomplete, 0)
        }
        guard bytes[1] == 3 else { return (.notTLS, 0) }
        let length = Int(bytes[3]) << 8 | Int(bytes[4])
        guard length <= 16384 + 2048 else { return (.notTLS, 0) }
        guard bytes.count >= 5 + length else { return (.incomplete, 0) }
        let body = Array(bytes[5..<(5 + length)])
        switch type {
        case .alert:
            guard body.count >= 2 else { return (.notTLS, 0) }
            return (.alert(Alert(level: body[0], description: body[1])), 5 + length)
        case .handshake:
            guard body.count >= 4 else { return (.other(.handshake), 5 + length) }
            let msgLength = Int(body[1]) << 16 | Int(body[2]) << 8 | Int(body[3])
            let msg = Array(body[4..<min(body.count, 4 + msgLength)])
            switch body[0] {
            case 1: if let hello = parseClientHello(msg) { return (.clientHello(hello), 5 + length) }
            case 2: if let hello = parseServerHello(msg) { return (.serverHello(hello), 5 + length) }
            default: break
            }
            return (.other(.handshake), 5 + length)
        default:
            return (.other(type), 5 + length)
        }
    }

    static func parseClientHello(_ m: [UInt8]) -> ClientHello? {
        var r = Reader(m)
        guard let version = r.u16(), r.skip(32), let sidLen = r.u8(), r.skip(Int(sidLen)),
            let csLen = r.u16(), let cs = r.bytes(Int(csLen)),
            let compLen = r.u8(), r.skip(Int(compLen))
        else { return nil }
        var suites: [UInt16] = []
        var i = 0
        while i + 1 < cs.count { suites.append(UInt16(cs[i]) << 8 | UInt16(cs[i + 1])); i += 2 }
        var hello = ClientHello(
            legacyVersion: version, serverName: nil, alpn: [], supportedVersions: [], cipherSuites: suites)
        guard let extLen = r.u16(), let exts = r.bytes(Int(extLen)) else { return hello }
        var e = Reader(exts)
        while let type = e.u16(), let len = e.u16(), let data = e.bytes(Int(len)) {
            var d = Reader(data)
            switch type {
            case 0:  // server_name
                if d.u16() != nil, d.u8() == 0, let nameLen = d.u16(), let name = d.bytes(Int(nameLen)) {
                    hello.serverName = String(decoding: name, as: UTF8.self)
                }
            case 16:  // ALPN
                if let listLen = d.u16(), let list = d.bytes(Int(listLen)) {
                    var l = Reader(list)
                    while let pl = l.u8(), let p = l.bytes(Int(pl)) {
                        hello.alpn.append(String(decoding: p, as: UTF8.self))
                    }
                }
            case 43:  // supported_versions
                if let listLen = d.u8(), let list = d.bytes(Int(listLen)) {
                    var l = Reader(list)
                    while let v = l.u16() { hello.supportedVersions.append(v) }
                }
            default: break
            }
        }
        return hello
    }

    static func parseServerHello(_ m: [UInt8]) -> ServerHello? {
        var r = Reader(m)
        guard let version = r.u16(), r.skip(32), let sidLen = r.u8(), r.skip(Int(sidLen)),
            let suite = r.u16(), r.skip(1)
        else { return nil }
        var hello = ServerHello(legacyVersion: version, cipherSuite: suite, selectedVersion: version, alpn: nil)
        guard let extLen = r.u16(), let exts = r.bytes(Int(extLen)) else { return hello }
        var e = Reader(exts)
        while let type = e.u16(), let len = e.u16(), let data = e.bytes(Int(len)) {
            var d = Reader(data)
            switch type {
            case 43: if let v = d.u16() { hello.selectedVersion = v }
            case 16:
                if d.u16() != nil, let pl = d.u8(), let p = d.bytes(Int(pl)) {
                    hello.alpn = String(decoding: p, as: UTF8.self)
                }
            default: break
            }
        }
        return hello
    }

    public static func versionName(_ v: UInt16) -> String {
        switch v {
        case 0x0300: return "SSLv3"
        case 0x0301: return "TLSv1.0"
        case 0x0302: return "TLSv1.1"
        case 0x0303: return "TLSv1.2"
        case 0x0304: return "TLSv1.3"
        default: return "0x" + String(v, radix: 16)
        }
    }

    public static func cipherName(_ c: UInt16) -> String {
        cipherNames[c] ?? "0x" + String(c, radix: 16, uppercase: true)
    }

    static let cipherNames: [UInt16: String] = [
        0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
        0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    ]

    /// RFC 8446 §6 alert names.
    public static func alertName(_ d: UInt8) -> String {
        switch d {
        case 0: return "close_notify"
        case 10: return "unexpected_message"
        case 20: return "bad_record_mac"
        case 22: return "record_overflow"
        case 40: return "handshake_failure"
        case 42: return "bad_certificate"
        case 43: return "unsupported_certificate"
        case 44: return "certificate_revoked"
        case 45: return "certificate_expired"
        case 46: return "certificate_unknown"
        case 47: return "illegal_parameter"
        case 48: return "unknown_ca"
        case 49: return "access_denied"
        case 50: return "decode_error"
        case 51: return "decrypt_error"
        case 70: return "protocol_version"
        case 71: return "insufficient_security"
        case 80: return "internal_error"
        case 86: return "inappropriate_fallback"
        case 90: return "user_canceled"
        case 109: return "missing_extension"
        case 110: return "unsupported_extension"
        case 112: return "unrecognized_name"
        case 113: return "bad_certificate_status_response"
        case 115: return "unknown_psk_identity"
        case 116: return "certificate_required"
        case 120: return "no_application_protocol"
        default: return "alert_\(d)"
        }
    }
}

struct Reader {
    let b: [UInt8]
    var i = 0
    init(_ b: [UInt8]) { self.b = b }
    mutating func u8() -> UInt8? {
        guard i < b.count else { return nil }
        defer { i += 1 }
        return b[i]
    }
    mutating func u16() -> UInt16? {
        guard i + 2 <= b.count else { return nil }
        defer { i += 2 }
        return UInt16(b[i]) << 8 | UInt16(b[i + 1])
    }
    mutating func skip(_ n: Int) -> Bool {
        guard i + n <= b.count else { return false }
        i += n
        return true
    }
    mutating func bytes(_ n: Int) -> [UInt8]? {
        guard i + n <= b.count else { return nil }
        defer { i += n }
        return Array(b[i..<(i + n)])
    }
}
