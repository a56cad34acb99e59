import Testing

@testable import AuthtapDissector

/// A TLS 1.3 ClientHello (SNI example.test, ALPN h2 + http/1.1) built field by field.
func clientHello(sni: String = "example.test", alpn: [String] = ["h2", "http/1.1"]) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    let name = Array(sni.utf8)
    let sniExt = u16(0) + u16(name.count + 5) + u16(name.count + 3) + [0] + u16(name.count) + name
    let protos = alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
    let alpnExt = u16(16) + u16(protos.count + 2) + u16(protos.count) + protos
    let versions = u16(43) + u16(5) + [4] + u16(0x0304) + u16(0x0303)
    let exts = sniExt + alpnExt + versions
    var body = u16(0x0303) + [UInt8](repeating: 7, count: 32) + [0] + u16(4) + u16(0x1301) + u16(0x1302) + [1, 0]
    body += u16(exts.count) + exts
    let handshake = [1, 0] + u16(body.count) + body
    return [22, 3, 1] + u16(handshake.count) + handshake
}

func serverHello(cipher: Int = 0x1302, tls13: Bool = true) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    let exts = tls13 ? u16(43) + u16(2) + u16(0x0304) : []
    let body = u16(0x0303) + [UInt8](repeating: 9, count: 32) + [0] + u16(cipher) + [0] + u16(exts.count) + exts
    let handshake = [2, 0] + u16(body.count) + body
    return [22, 3, 3] + u16(handshake.count) + handshake
}

struct RecordCase: Sendable, CustomStringConvertible {
    var description: String
    var bytes: [UInt8]
    var expected: TLSDissector.Parsed
}

let recordCases: [RecordCase] = [
    .init(
        description: "client hello", bytes: clientHello(),
        expected: .clientHello(
            .init(
                legacyVersion: 0x0303, serverName: "example.test", alpn: ["h2", "http/1.1"],
                supportedVersions: [0x0304, 0x0303], cipherSuites: [0x1301, 0x1302]))),
    .init(
        description: "server hello 1.3", bytes: serverHello(),
        expected: .serverHello(.init(legacyVersion: 0x0303, cipherSuite: 0x1302, selectedVersion: 0x0304, alpn: nil))),
    .init(
        description: "server hello 1.2", bytes: serverHello(cipher: 0xC02F, tls13: false),
        expected: .serverHello(.init(legacyVersion: 0x0303, cipherSuite: 0xC02F, selectedVersion: 0x0303, alpn: nil))),
    .init(
        description: "alert unknown_ca", bytes: [21, 3, 3, 0, 2, 2, 48],
        expected: .alert(.init(level: 2, description: 48))),
    .init(description: "plain http", bytes: Array("GET / HTTP/1.1\r\n\r\n".utf8), expected: .notTLS),
    .init(description: "bad version byte", bytes: [22, 9, 1, 0, 5, 1, 1, 1, 1, 1], expected: .notTLS),
]

@Suite struct DissectorTests {
    @Test(arguments: recordCases)
    func wholeRecord(_ c: RecordCase) {
        #expect(TLSDissector.parseFirstRecord(c.bytes).0 == c.expected)
    }

    /// Fed byte by byte, every strict prefix is `incomplete` (or already `notTLS`) and the whole parses the same.
    @Test(arguments: recordCases)
    func byteByByte(_ c: RecordCase) {
        var seen: [UInt8] = []
        var last = TLSDissector.Parsed.incomplete
        for byte in c.bytes {
            seen.append(byte)
            last = TLSDissector.parseFirstRecord(seen).0
            if seen.count < c.bytes.count, c.expected != .notTLS {
                #expect(last == .incomplete)
            }
            if last == .notTLS { break }
        }
        #expect(last == c.expected)
    }

    @Test func names() {
        #expect(TLSDissector.alertName(48) == "unknown_ca")
        #expect(TLSDissector.alertName(42) == "bad_certificate")
        #expect(TLSDissector.cipherName(0x1301) == "TLS_AES_128_GCM_SHA256")
        #expect(TLSDissector.versionName(0x0304) == "TLSv1.3")
        #expect(TLSDissector.cipherName(0xABCD) == "0xABCD")
    }
}
