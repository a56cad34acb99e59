import AuthtapModel
import Foundation
import GRDB
import Testing

@testable import AuthtapStore

// The exchange table's JSON columns: the hand-written writer (`JSONText.append…`) and scanner (`decode…`).

/// The exchange columns' JSON strings: the word-at-a-time scan must find an escape at every offset
/// of a word and in the tail, and the text must read back as the same string.
@Test(
    arguments: [
        ("", #""""#),
        ("plain ASCII, longer than one word of eight bytes", #""plain ASCII, longer than one word of eight bytes""#),
        ("\"", #""\"""#),
        ("a\\b", #""a\\b""#),
        ("0123456\"", #""0123456\"""#),  // last byte of the first word
        ("01234567\"abcdefg", #""01234567\"abcdefg""#),  // first byte of the second word
        ("0123456789abcde\n", #""0123456789abcde\n""#),
        ("tab\there\rcr", #""tab\there\rcr""#),
        ("\u{0}\u{1}\u{1F} ~\u{7F}", "\"\\u0000\\u0001\\u001f ~\u{7F}\""),  // DEL is not a control byte for JSON
        ("Zoë 𝄞 €: bytes ≥ 0x80 are never escaped \"", #""Zoë 𝄞 €: bytes ≥ 0x80 are never escaped \"""#),
        ("!#$%&'()*+,-./[]^_`{|}~ and 0x1F\u{1F}", #""!#$%&'()*+,-./[]^_`{|}~ and 0x1F\u001f""#),
    ] as [(String, String)])
func jsonStringEscaping(_ raw: String, _ expected: String) throws {
    var out: [UInt8] = []
    JSONText.appendQuoted(raw, to: &out)
    #expect(String(decoding: out, as: UTF8.self) == expected)
    let back = try JSONSerialization.jsonObject(with: Data(out), options: .fragmentsAllowed) as? String
    #expect(back == raw)
}

/// Every position of a special byte in strings of 1…24 bytes, against the one-byte-at-a-time rule.
@Test func jsonEscapingAtEveryOffset() throws {
    for length in 1...24 {
        for position in 0..<length {
            for special: UInt8 in [0x00, 0x0A, 0x1F, 0x22, 0x5C] {
                var bytes = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                bytes[position] = special
                let raw = String(decoding: bytes, as: UTF8.self)
                var out: [UInt8] = []
                JSONText.appendQuoted(raw, to: &out)
                var reference: [UInt8] = [UInt8(ascii: "\"")]
                for c in bytes {
                    switch c {
                    case 0x22, 0x5C: reference += [0x5C, c]
                    case 0x0A: reference += Array(#"\n"#.utf8)
                    case 0x00: reference += Array(#"\u0000"#.utf8)
                    case 0x1F: reference += Array(#"\u001f"#.utf8)
                    default: reference.append(c)
                    }
                }
                reference.append(UInt8(ascii: "\""))
                #expect(out == reference, "length \(length), byte \(special) at \(position)")
            }
        }
    }
}

/// Headers and params written by the codec read back the same, whatever their bytes.
@Test func headersAndParamsRoundTrip() {
    let awkward = [
        "", "plain", "quote \" and backslash \\", "newline\n tab\t nul\u{0}", "Zoë 𝄞 €", "[\"not\",\"json\"]",
    ]
    let headers = awkward.map { HeaderField("X-\($0)", $0) }
    #expect(JSONText.decodeHeaders(JSONText.headers(headers)) == headers)
    let params = awkward.enumerated().map { i, v in
        OAuthParam(
            location: i.isMultiple(of: 2) ? .requestBody : .other("weird \"\(v)\""), name: "n\(v)", value: v,
            fingerprint: i.isMultiple(of: 3) ? nil : "fp\(i)")
    }
    #expect(JSONText.decodeParams(JSONText.params(params)) == params)
    #expect(JSONText.decodeParams(nil).isEmpty)
}

/// The params column as capture files before v5 hold it: one object per param.
@Test func paramsFromObjectsOfOlderFiles() {
    let text =
        #"[{"location":"request.body","name":"code","value":"[masked code len=4 fp=ab]","fingerprint":"ab"},"#
        + #" {"name":"incomplete"}]"#
    let params = JSONText.decodeParams(text)
    #expect(params.count == 1)
    #expect(params.first?.name == "code" && params.first?.location == .requestBody && params.first?.fingerprint == "ab")
}

/// Text that is not what the codec wrote (a damaged or crafted file) gives what it can, and never traps.
@Test(arguments: [
    "", "[", "]", "[[", "[[\"a\"", "[[\"a\",\"b\"", "{\"a\":", "\"", "[\"\\", "[[\"\\u12\"]]",
    "[[\"\\ud800\",\"x\"]]", String(repeating: "[", count: 10_000), "null", "1e300",
])
func damagedColumnsNeverTrap(_ text: String) {
    _ = JSONText.decodeHeaders(text)
    _ = JSONText.decodeParams(text)
    let facts: TLSFacts? = JSONText.decode(text)
    #expect(facts == nil || text.hasPrefix("{"))
}

/// TLS facts go through Codable: what is written reads back equal.
@Test func tlsFactsRoundTrip() throws {
    let facts = TLSFacts(version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", alpn: "h2", sni: "idp.test")
    let back: TLSFacts? = JSONText.decode(JSONText.encode(facts))
    #expect(back == facts)
}
