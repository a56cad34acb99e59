import AuthtapModel
import Foundation
import Testing

@testable import AuthtapOAuth

/// One secret in one place: the exchange that carries it and the bytes that must not survive recording.
struct CanaryPosition: Sendable, CustomStringConvertible {
    var description: String
    var canary: String
    var exchange: @Sendable () -> Exchange
}

/// The canary table, generated from the rule tables: every example name of every secret family in every
/// place a name can stand, and every published token format and JWT shape under readable names.
enum CanaryTable {
    static func value(_ family: String, _ n: Int) -> String { "CANARY\(family.filter(\.isLetter))\(n)Zq7" }

    static func post(_ target: String, _ type: String?, _ text: String, _ more: [HeaderField] = []) -> Exchange {
        var e = baseExchange(method: "POST", target: target)
        if let type { e.requestHeaders = [HeaderField("Content-Type", type)] }
        e.requestHeaders += more
        e.requestBody = body(text)
        return e
    }

    static func response(_ type: String, _ text: String) -> Exchange {
        var e = baseExchange(target: "/api")
        e.responseHeaders = [HeaderField("Content-Type", type)]
        e.responseBody = body(text)
        return e
    }

    static func isToken(_ name: String) -> Bool {
        name.utf8.allSatisfy { Masker.isNameByte($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    static let names: [CanaryPosition] = {
        var out: [CanaryPosition] = []
        var n = 0
        for family in SecretFamily.all {
            for name in family.examples {
                n += 1
                let v = value(family.id, n)
                let q = FormCoding.encode(name)
                func add(_ place: String, _ make: @escaping @Sendable () -> Exchange) {
                    out.append(
                        CanaryPosition(description: "\(family.id) \(name) in \(place)", canary: v, exchange: make))
                }
                add("query") { baseExchange(target: "/cb?state=s1&\(q)=\(v)") }
                add("fragment") { baseExchange(target: "/cb#\(q)=\(v)&token_type=Bearer") }
                add("form") { post("/token", "application/x-www-form-urlencoded", "grant_type=x&\(q)=\(v)") }
                add("form labelled JSON") { post("/token", "application/json", "grant_type=x&\(q)=\(v)") }
                add("multipart") {
                    post(
                        "/upload", "multipart/form-data; boundary=XyZ",
                        "--XyZ\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(v)\r\n--XyZ--\r\n")
                }
                add("JSON") { response("application/json", #"{"ok":true,"\#(name)":"\#(v)"}"#) }
                add("JSON nested in arrays") { response("application/json", #"{"a":[{"b":[{"\#(name)":"\#(v)"}]}]}"#) }
                add("JSON object under the name") { response("application/json", #"{"\#(name)":{"value":"\#(v)"}}"#) }
                add("URL inside a JSON string") {
                    response("application/json", #"{"next":"https://app.test/cb?state=s&\#(q)=\#(v)"}"#)
                }
                add("free text") { response("text/plain", "debug: \(name)=\(v) end") }
                add("HTML input") {
                    response("text/html", #"<form><input type="hidden" name="\#(name)" value="\#(v)"></form>"#)
                }
                add("body cut at the limit inside the secret") {
                    var e = response("application/json", "")
                    let text = #"{"\#(name)":"\#(v)"}"#
                    let cut = text.utf8.count - 5
                    e.responseBody = CapturedBody(bytes: Array(text.utf8.prefix(cut)), size: text.utf8.count + 100)
                    return e
                }
                add("gzip JSON") {
                    var e = response("application/json", "")
                    e.responseHeaders.append(HeaderField("Content-Encoding", "gzip"))
                    let bytes = Compress.gzip(Array(#"{"ok":true,"\#(name)":"\#(v)"}"#.utf8))
                    e.responseBody = CapturedBody(bytes: bytes, size: bytes.count)
                    return e
                }
                add("zstd form") {
                    var e = post("/token", "application/x-www-form-urlencoded", "")
                    e.requestHeaders.append(HeaderField("Content-Encoding", "zstd"))
                    let bytes = Compress.zstd(Array("grant_type=x&\(q)=\(v)".utf8))
                    e.requestBody = CapturedBody(bytes: bytes, size: bytes.count)
                    return e
                }
                add("UTF-16 JSON") {
                    var e = response("application/json; charset=utf-16le", "")
                    let bytes = Compress.utf16LE(#"{"\#(name)":"\#(v)"}"#, bom: false)
                    e.responseBody = CapturedBody(bytes: bytes, size: bytes.count)
                    return e
                }
                if isToken(name) {
                    add("header") {
                        var e = baseExchange(target: "/api")
                        e.requestHeaders = [HeaderField(name, v)]
                        return e
                    }
                    add("cookie") {
                        var e = baseExchange(target: "/api")
                        e.requestHeaders = [HeaderField("Cookie", "\(name)=\(v); theme=dark")]
                        return e
                    }
                }
                if isToken(name) || name.contains(":") {
                    add("XML element") {
                        response("application/soap+xml", "<Envelope><Body><\(name)>\(v)</\(name)></Body></Envelope>")
                    }
                    add("XML attribute") { response("application/xml", #"<Login \#(name)="\#(v)" user="a"/>"#) }
                }
            }
        }
        return out
    }()

    /// Token formats and JWT shapes under names that are readable: found by their shape alone.
    static let shapes: [CanaryPosition] = {
        var out: [CanaryPosition] = []
        var shapes = TokenFormats.all.map { ($0.id, $0.example, $0.example) }
        let header = JWT.base64URL(Array(#"{"alg":"ES256","typ":"JWT"}"#.utf8))
        let claims = JWT.base64URL(Array(#"{"sub":"alice","iss":"https://idp.test"}"#.utf8))
        let signature = "SIGcanaryJWTsignature0123456789abcdefXYZ"
        shapes.append(("jws", "\(header).\(claims).\(signature)", signature))
        let jweParts = [
            "CANARYjweKEYpart0123456789", "CANARYjweIVpart01", "CANARYjweCIPHERTEXTpart0123456789",
            "CANARYjweTAGpart0123",
        ]
        let jweHeader = JWT.base64URL(Array(#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#.utf8))
        shapes.append(("jwe", ([jweHeader] + jweParts).joined(separator: "."), "CANARYjweCIPHERTEXTpart0123456789"))
        shapes.append(("opaque", "Xq3vT9mB2kLp8RwZ4nYc6HdJ1fGs5aVe", "Xq3vT9mB2kLp8RwZ4nYc6HdJ1fGs5aVe"))
        for (id, token, canary) in shapes {
            func add(_ place: String, _ make: @escaping @Sendable () -> Exchange) {
                out.append(CanaryPosition(description: "\(id) in \(place)", canary: canary, exchange: make))
            }
            let q = FormCoding.encode(token)
            add("a readable JSON value") { response("application/json", #"{"note":"\#(token.jsonEscaped)"}"#) }
            add("free text") { response("text/plain", "value is \(token)\n") }
            add("a readable query value") { baseExchange(target: "/api?debug=\(q)") }
            add("a readable header") {
                var e = baseExchange(target: "/api")
                e.responseHeaders = [HeaderField("X-Debug", token)]
                return e
            }
            add("XML text") { response("application/xml", "<r><note>\(token)</note></r>") }
            if !token.contains("\n") {
                add("the URL path") { baseExchange(target: "/api/\(token)/profile") }
            }
        }
        return out
    }()
}

extension String {
    var jsonEscaped: String {
        replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// Everything a recorded exchange would write, as one text.
func recordedText(_ e: Exchange) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    let json = (try? encoder.encode(e)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    let bodies = String(decoding: e.requestBody.bytes + e.responseBody.bytes, as: UTF8.self)
    return json + bodies + e.oauthParams.map(\.value).joined()
}

@Test func canaryTableIsLarge() {
    #expect(CanaryTable.names.count + CanaryTable.shapes.count >= 150)
}

@Test(arguments: CanaryTable.names + CanaryTable.shapes)
func canaryNeverSurvivesRecording(_ position: CanaryPosition) {
    let recorded = masker.record(position.exchange())
    let text = recordedText(recorded)
    #expect(!text.contains(position.canary), "\(position.description)")
    // A canary cut in the middle must not leave a long prefix either.
    #expect(!text.contains(String(position.canary.prefix(16))), "\(position.description): prefix survived")
}

@Test(arguments: CanaryTable.names + CanaryTable.shapes)
func recordingIsIdempotent(_ position: CanaryPosition) {
    // An imported authtap HAR is recorded again: masked text must come out unchanged, fingerprints kept.
    let once = masker.record(position.exchange())
    let twice = masker.record(once)
    #expect(twice.target == once.target, "\(position.description)")
    #expect(twice.requestHeaders == once.requestHeaders, "\(position.description)")
    #expect(twice.responseHeaders == once.responseHeaders, "\(position.description)")
    #expect(twice.requestBody.bytes == once.requestBody.bytes, "\(position.description)")
    #expect(twice.responseBody.bytes == once.responseBody.bytes, "\(position.description)")
    #expect(SecretAudit.hits(in: once, masker: masker).isEmpty, "\(position.description)")
}
