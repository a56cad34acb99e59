import AuthtapModel
import Foundation
import Testing

@testable import AuthtapOAuth

/// Recording decodes a body before masking it: what is stored, and what is said about it.
struct RecordBodyTests {
    /// The token error a production server sends compressed (the body issue 16 found lost).
    let tokenError =
        #"{"error":"invalid_grant","error_description":"Authorization code already redeemed.","#
        + #""refresh_token":"GzipRefreshCanary"}"#

    func gzipResponse(_ bytes: [UInt8], coding: String = "gzip", captured: Int? = nil) -> Exchange {
        var e = baseExchange(method: "POST", target: "/token", status: 400)
        e.requestHeaders = [HeaderField("Content-Type", "application/x-www-form-urlencoded")]
        e.requestBody = body(
            "grant_type=authorization_code&code=RequestCodeCanary&redirect_uri=https%3A%2F%2Fapp.test%2Fcb")
        e.responseHeaders = [HeaderField("Content-Type", "application/json"), HeaderField("Content-Encoding", coding)]
        let kept = Array(bytes.prefix(captured ?? bytes.count))
        e.responseBody = CapturedBody(bytes: kept, size: bytes.count)
        return e
    }

    @Test func gzipBodyIsDecodedMaskedAndDescribed() {
        let wire = Compress.gzip(Array(tokenError.utf8))
        let r = masker.record(gzipResponse(wire))
        let text = String(decoding: r.responseBody.bytes, as: UTF8.self)
        #expect(text.hasPrefix(#"{"error":"invalid_grant","error_description":"Authorization code already redeemed.""#))
        #expect(!text.contains("GzipRefreshCanary") && text.contains("[masked refresh_token"))
        #expect(r.responseBody.encoding == "gzip")
        #expect(r.responseBody.size == wire.count)
        #expect(r.responseBody.decodedSize == tokenError.utf8.count)
        #expect(!r.responseBody.truncated && r.responseBody.note == nil)
        // The response's parameters are read from the decoded text.
        #expect(r.oauthParams.contains { $0.name == "error" && $0.value == "invalid_grant" })
    }

    @Test func bombStopsAtTheBodyLimit() {
        let small = Masker(fingerprinter: masker.fingerprinter, bodyLimit: 4096)
        let wire = Compress.gzip([UInt8](repeating: UInt8(ascii: "a"), count: 8 << 20))
        let r = small.record(gzipResponse(wire))
        #expect(r.responseBody.bytes.count <= 4096 && r.responseBody.bytes.count > 0)
        #expect(r.responseBody.truncated && r.responseBody.decodedSize == nil)
    }

    @Test func corruptStreamIsAFactNotRawBytes() {
        var wire = Compress.gzip(Array(tokenError.utf8))
        wire[wire.count / 2] ^= 0xFF
        let r = masker.record(gzipResponse(wire))
        #expect(r.responseBody.bytes.isEmpty)
        #expect(r.responseBody.note?.hasPrefix("body not decoded:") == true)
        #expect(r.responseBody.size == wire.count)
    }

    @Test func captureCutInsideTheStreamKeepsTheDecodedPrefixMasked() {
        let long =
            #"{"access_token":"CutCanaryAccessToken0123456789","#
            + String(repeating: #""pad":"xxxxxxxxxxxxxxxx","#, count: 200) + #""end":1}"#
        let wire = Compress.gzip(Array(long.utf8))
        let r = masker.record(gzipResponse(wire, captured: wire.count / 2))
        #expect(r.responseBody.truncated)
        #expect(!r.responseBody.bytes.isEmpty)
        #expect(!recordedText(r).contains("CutCanaryAccessToken"))
    }

    @Test func unknownCodingIsNotKept() {
        let r = masker.record(gzipResponse(Array("x=1".utf8), coding: "compress"))
        #expect(r.responseBody.bytes.isEmpty && r.responseBody.note?.contains("compress") == true)
    }

    @Test func windows1252IsConvertedBeforeMasking() {
        var e = baseExchange(target: "/login")
        e.responseHeaders = [HeaderField("Content-Type", "text/html; charset=windows-1252")]
        // 0x80 is € in Windows-1252: not UTF-8, so it would not be kept without conversion.
        let bytes = Array("<p>Pr".utf8) + [0x80] + Array(#"</p><input name="password" value="Cp1252Canary">"#.utf8)
        e.responseBody = CapturedBody(bytes: bytes, size: bytes.count)
        let r = masker.record(e)
        let text = String(decoding: r.responseBody.bytes, as: UTF8.self)
        #expect(text.contains("Pr€") && !text.contains("Cp1252Canary"))
        #expect(r.responseBody.note == "converted from windows-1252")
    }

    @Test func binaryIsNotKept() {
        var e = baseExchange(target: "/logo.png")
        e.responseHeaders = [HeaderField("Content-Type", "image/png")]
        e.responseBody = CapturedBody(
            bytes: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF, 0xD8], size: 11)
        let r = masker.record(e)
        #expect(r.responseBody.bytes.isEmpty && r.responseBody.note?.hasPrefix("body not kept") == true)
    }

    @Test func recordedBodiesAreNotDecodedTwice() {
        let once = masker.record(gzipResponse(Compress.gzip(Array(tokenError.utf8))))
        let twice = masker.record(once)
        #expect(twice.responseBody == once.responseBody)
    }
}
