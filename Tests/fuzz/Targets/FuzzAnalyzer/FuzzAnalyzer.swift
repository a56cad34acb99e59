import AuthtapAnalyzer
import AuthtapDissector
import AuthtapModel
import AuthtapOAuth
import Foundation
import FuzzSupport

/// The analyzer, fed what live capture feeds it: exchanges recorded by the masker (so roles and params are
/// the real ones), with arbitrary facts around them. Exchanges are separated by 0xFE; each starts with
/// choice bytes and an 8-byte start time (any Double: NaN, infinities and 1e300 included), then NUL-separated
/// target, request headers, request body, response headers, response body. A trailing 0xFD part becomes a
/// packet-level handshake record of the same session.
let hosts = ["login.example.com", "api.example.com", "127.0.0.1", "accounts.google.com", "login.microsoftonline.com"]
let methods = ["GET", "POST", "CONNECT", "PUT", "OPTIONS", ""]
let errors: [ErrorKind?] = [nil] + ErrorKind.allCases.map { $0 }
let masker = Masker(fingerprinter: Fingerprinter(key: Array(repeating: 5, count: 32)))
let analyzer = Analyzer(caPath: "/nonexistent/authtap-ca.pem")

func double(_ input: inout FuzzInput) -> Double {
    var bits: UInt64 = 0
    for _ in 0..<8 { bits = bits << 8 | UInt64(input.byte()) }
    return Double(bitPattern: bits)
}

func headers(_ text: String) -> [HeaderField] {
    text.split(separator: "\n").prefix(32).map { line in
        let parts = line.split(separator: ":", maxSplits: 1)
        return HeaderField(String(parts.first ?? ""), parts.count > 1 ? String(parts[1]) : "")
    }
}

func exchange(_ bytes: ArraySlice<UInt8>, index: Int) -> Exchange {
    var input = FuzzInput(Array(bytes))
    let flags = input.byte()
    let host = hosts[input.choose(hosts.count)]
    let method = methods[input.choose(methods.count)]
    let status = Int(input.byte()) << 8 | Int(input.byte())
    let start = double(&input)
    var raw = Exchange(
        connectionID: UInt64(flags & 3), clientAddress: "127.0.0.1:5000", scheme: flags & 4 == 0 ? .https : .http,
        host: host, port: flags & 8 == 0 ? 443 : Int(status), method: method, target: input.text(),
        start: Date(timeIntervalSince1970: start))
    raw.status = flags & 16 == 0 ? status % 1000 : nil
    raw.error = errors[input.choose(errors.count)]
    raw.timings.end = flags & 32 == 0 ? nil : double(&input)
    raw.timings.firstByte = flags & 64 == 0 ? nil : double(&input)
    if flags & 128 != 0 {
        raw.upstreamTLS = TLSFacts(version: "TLSv1.3", sni: input.text(), verification: input.text())
    }
    raw.requestHeaders = headers(input.text())
    let request = input.field()
    raw.requestBody = CapturedBody(bytes: request, size: request.count)
    raw.responseHeaders = headers(input.text())
    let response = input.rest()
    raw.responseBody = CapturedBody(bytes: response, size: response.count)
    var recorded = masker.record(raw)
    recorded.id = Int64(index + 1)
    return recorded
}

func handshake(_ bytes: ArraySlice<UInt8>) -> HandshakeRecord? {
    var input = FuzzInput(Array(bytes))
    let outcome = HandshakeRecord.Outcome.allCases[input.choose(HandshakeRecord.Outcome.allCases.count)]
    let json = """
        {"client":"127.0.0.1","clientPort":\(input.byte()),"server":"\(hosts[input.choose(hosts.count)])",
         "serverPort":443,"outcome":"\(outcome.rawValue)","encryptedAlert":false,"alpnOffered":[],"versionsOffered":[],
         "cipherSuitesOffered":1,"helloRetryRequest":false,"certificateSANs":[],"startMicros":0,"endMicros":1,
         "firstPacket":1,"lastPacket":2,"clientHelloRetransmits":0,"detail":""}
        """
    guard var record = try? JSONDecoder().decode(HandshakeRecord.self, from: Data(json.utf8)) else { return nil }
    record.alert = input.text()
    record.sni = input.text()
    record.startMicros = Int64(bitPattern: double(&input).bitPattern)
    record.durationMs = double(&input)
    record.certificateNotAfter = Date(timeIntervalSince1970: double(&input))
    return record
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let parts = bytes.split(separator: 0xFD, maxSplits: 1, omittingEmptySubsequences: false)
    let exchanges = parts[0].split(separator: 0xFE, omittingEmptySubsequences: false).prefix(12).enumerated()
        .map { exchange($0.element, index: $0.offset) }
    let handshakes = parts.count > 1 ? handshake(parts[1]).map { [$0] } ?? [] : []
    _ = analyzer.analyze(exchanges, handshakes: handshakes, proxyPort: 8080)
    return 0
}

@_cdecl("FuzzAnalyzer_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
