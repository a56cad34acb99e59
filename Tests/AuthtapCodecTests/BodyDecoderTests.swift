import CZlib
import CZstd
import Foundation
import Testing

@testable import AuthtapCodec

/// The token endpoint's error reply every fixture below encodes (70 bytes, no trailing newline).
let payload = Array(#"{"error":"invalid_grant","error_description":"Code already redeemed."}"#.utf8)

/// A body made by a real encoder, with the headers it would travel under.
struct Fixture: Sendable, CustomTestStringConvertible {
    var name: String
    var contentEncoding: String?
    var transferEncoding: String? = nil
    /// The command that produced `base64`, run over `payload` saved as payload.json.
    var command: String
    var base64: String
    var codings: [String]
    /// One stream whose every proper prefix is incomplete (false for several gzip members or zstd frames).
    var singleStream = true

    var bytes: [UInt8] { Data(base64Encoded: base64).map(Array.init) ?? [] }
    var testDescription: String { name }
}

let fixtures: [Fixture] = [
    Fixture(
        name: "gzip", contentEncoding: "gzip", command: "gzip -9nc payload.json",
        base64: "H4sIAAAAAAACA6tWSi0qyi9SslLKzCtLzMlMiU8vSswrUdKBiMenpBYnF2UWlGTm5wHVOOenpCok5hSlJqZUKhSlpqSm5qam6C"
            + "nVAgDSOIQSRgAAAA==",
        codings: ["gzip"]),
    Fixture(
        name: "x-gzip", contentEncoding: "X-Gzip", command: "gzip -9nc payload.json",
        base64: "H4sIAAAAAAACA6tWSi0qyi9SslLKzCtLzMlMiU8vSswrUdKBiMenpBYnF2UWlGTm5wHVOOenpCok5hSlJqZUKhSlpqSm5qam6C"
            + "nVAgDSOIQSRgAAAA==",
        codings: ["gzip"]),
    Fixture(
        name: "gzip, two members", contentEncoding: "gzip",
        command: "(printf '{\"error\":\"invalid_grant\",' | gzip -9nc; "
            + "printf '\"error_description\":...}' | gzip -9nc)",
        base64: "H4sIAAAAAAACA6tWSi0qyi9SslLKzCtLzMlMiU8vSswrUdIBAPDZBhwZAAAAH4sIAAAAAAACA1NKLSrKL4pPSS1OLsosKMnMz1"
            + "OyUnLOT0lVSMwpSk1MqVQoSk1JTc1NTdFTqgUAcw6vOy0AAAA=",
        codings: ["gzip"], singleStream: false),
    Fixture(
        name: "deflate, zlib-wrapped", contentEncoding: "deflate",
        command: "python3 -c 'import zlib; zlib.compress(payload)'",
        base64: "eJyrVkotKsovUrJSyswrS8zJTIlPL0rMK1HSgYjHp6QWJxdlFpRk5ucB1Tjnp6QqJOYUpSamVCoUpaakpuampugp1QIAit0ZaA==",
        codings: ["deflate"]),
    Fixture(
        name: "deflate, raw", contentEncoding: "deflate",
        command: "python3 -c 'import zlib; c = zlib.compressobj(wbits=-15); c.compress(payload) + c.flush()'",
        base64: "q1ZKLSrKL1KyUsrMK0vMyUyJTy9KzCtR0oGIx6ekFicXZRaUZObnAdU456ekKiTmFKUmplQqFKWmpKbmpqboKdUCAA==",
        codings: ["deflate"]),
    Fixture(
        name: "br", contentEncoding: "br", command: "brotli -c payload.json",
        base64: "oSgCAOBIsGMn3DgGd4KaHPnNQ335x2pLy6G0vmLR8YCbCEmJNUY88Bj27yaH9OPjC2kagCYhaK+oIdZfhuripHEx",
        codings: ["br"]),
    Fixture(
        name: "zstd", contentEncoding: "zstd", command: "zstd -qc payload.json",
        base64: "KLUv/SRGBQIAAgQOFaA5Bz0dJPlXZmk8vuxvY7l7sv4LA0uDc2Gfb5IzP5nxKaGnqXAZ+OHwIaAr7QQ6TIYk9vTqd5UBAO0wx2"
            + "hjops=",
        codings: ["zstd"]),
    Fixture(
        name: "zstd, two frames", contentEncoding: "zstd",
        command: "(printf '{\"error\":\"invalid_grant\",' | zstd -qc; printf '\"error_description\":...}' | zstd -qc)",
        base64: "KLUv/QRYyQAAeyJlcnJvciI6ImludmFsaWRfZ3JhbnQiLHGtfS8otS/9BFhpAQAiZXJyb3JfZGVzY3JpcHRpb24iOiJDb2RlIGFs"
            + "cmVhZHkgcmVkZWVtZWQuIn0Q1Mug",
        codings: ["zstd"], singleStream: false),
    // "gzip, br": the sender gzipped, then brotli-compressed the result, so br is undone first.
    Fixture(
        name: "gzip, br", contentEncoding: "gzip, br", command: "gzip -9nc payload.json | brotli -c",
        base64: "DyqAH4sIAAAAAAACA6tWSi0qyi9SslLKzCtLzMlMiU8vSswrUdKBiMenpBYnF2UWlGTm5wHVOOenpCok5hSlJqZUKhSlpqSm5"
            + "qam6CnVAgDSOIQSRgAAAAM=",
        codings: ["gzip", "br"]),
    Fixture(
        name: "Transfer-Encoding gzip, chunked", contentEncoding: nil, transferEncoding: "gzip, chunked",
        command: "gzip -9nc payload.json",
        base64: "H4sIAAAAAAACA6tWSi0qyi9SslLKzCtLzMlMiU8vSswrUdKBiMenpBYnF2UWlGTm5wHVOOenpCok5hSlJqZUKhSlpqSm5qam6C"
            + "nVAgDSOIQSRgAAAA==",
        codings: ["gzip"]),
    // Transfer codings are outside content codings: this body is gzip(br(payload)), so gzip is undone first.
    Fixture(
        name: "Content-Encoding br, Transfer-Encoding gzip", contentEncoding: "br", transferEncoding: "gzip, chunked",
        command: "brotli -c payload.json | gzip -9nc",
        base64: "H4sIAAAAAAACAwFCAL3/oSgCAOBIsGMn3DgGd4KaHPnNQ335x2pLy6G0vmLR8YCbCEmJNUY88Bj27yaH9OPjC2kagCYhaK+oIdZ"
            + "fhuripHExSvytmEIAAAA=",
        codings: ["br", "gzip"]),
]

private func decode(
    _ bytes: [UInt8], _ fixture: Fixture, limit: Int = 1 << 20, inputComplete: Bool = true
) -> DecodedBody {
    BodyDecoder.decode(
        bytes, contentEncoding: fixture.contentEncoding, transferEncoding: fixture.transferEncoding,
        limit: limit, inputComplete: inputComplete)
}

private func decode(
    _ bytes: [UInt8], _ contentEncoding: String?, limit: Int = 1 << 20, inputComplete: Bool = true
) -> DecodedBody {
    BodyDecoder.decode(
        bytes, contentEncoding: contentEncoding, transferEncoding: nil, limit: limit, inputComplete: inputComplete)
}

@Suite struct CodingTests {
    @Test(arguments: fixtures)
    func decodesRealEncoderOutput(fixture: Fixture) {
        #expect(!fixture.bytes.isEmpty)
        let body = decode(fixture.bytes, fixture)
        #expect(body == DecodedBody(bytes: payload, truncated: false, codings: fixture.codings))
    }

    @Test(arguments: fixtures)
    func ignoresTrailingGarbage(fixture: Fixture) {
        let body = decode(fixture.bytes + Array("\r\ngarbage".utf8), fixture)
        #expect(body == DecodedBody(bytes: payload, truncated: false, codings: fixture.codings))
    }

    /// Every cut point of every fixture: a prefix is never a crash and never a failure, only a truncated prefix.
    @Test(arguments: fixtures)
    func prefixAtEveryCutIsTruncatedNotFailed(fixture: Fixture) {
        let bytes = fixture.bytes
        for cut in 0..<bytes.count {
            let body = decode(Array(bytes[..<cut]), fixture, inputComplete: false)
            #expect(body.failure == nil, "cut \(cut): \(body.failure ?? "")")
            #expect(body.truncated, "cut \(cut)")
            #expect(payload.starts(with: body.bytes), "cut \(cut)")
        }
        // The whole body flagged as a prefix: the stream ended, so nothing is missing (unless members may follow).
        let whole = decode(bytes, fixture, inputComplete: false)
        #expect(whole.bytes == payload)
    }

    /// A complete body that ends mid-stream is broken, not cut by authtap: that is a failure with no bytes.
    @Test(arguments: fixtures)
    func completeBodyEndingMidStreamFails(fixture: Fixture) {
        let bytes = fixture.bytes
        for cut in 1..<bytes.count {
            let body = decode(Array(bytes[..<cut]), fixture, inputComplete: true)
            if fixture.singleStream {
                #expect(body.failure != nil, "cut \(cut)")
                #expect(body.bytes.isEmpty, "cut \(cut)")
            } else if body.failure == nil {
                // A cut between gzip members or zstd frames is itself a complete body.
                #expect(payload.starts(with: body.bytes), "cut \(cut)")
            }
        }
    }

    @Test func decodedPrefixOfTruncatedGzip() throws {
        let gzip = try #require(fixtures.first).bytes
        let body = decode(Array(gzip.prefix(gzip.count - 8)), "gzip", inputComplete: false)
        // Without the CRC and size trailer all the data is there, yet the stream did not end.
        #expect(body == DecodedBody(bytes: payload, truncated: true, codings: ["gzip"]))
        let broken = decode(Array(gzip.prefix(gzip.count - 8)), "gzip", inputComplete: true)
        #expect(broken.failure == "incomplete gzip stream (the body ends mid-stream)")
        #expect(broken.bytes.isEmpty)
    }

    @Test(
        arguments: [
            (nil, nil), ("identity", nil), (nil, "chunked"), ("Identity", "identity, chunked"), (" , ", ""),
        ] as [(String?, String?)])
    func identity(contentEncoding: String?, transferEncoding: String?) {
        let body = BodyDecoder.decode(
            payload, contentEncoding: contentEncoding, transferEncoding: transferEncoding, limit: 1000,
            inputComplete: true)
        #expect(body == DecodedBody(bytes: payload, truncated: false, codings: []))
    }

    @Test func identityPrefixAndLimit() {
        #expect(decode(payload, nil, inputComplete: false) == DecodedBody(bytes: payload, truncated: true, codings: []))
        let clipped = decode(payload, nil, limit: 10)
        #expect(clipped == DecodedBody(bytes: Array(payload[..<10]), truncated: true, codings: []))
        #expect(decode(payload, nil, limit: -1) == DecodedBody(bytes: [], truncated: true, codings: []))
    }

    @Test(arguments: ["gzip", "deflate", "br", "zstd", "gzip, br", "x-gzip, zstd"])
    func emptyBodyWithCoding(coding: String) {
        let body = decode([], coding)
        #expect(body.bytes.isEmpty)
        #expect(body.failure == nil)
        #expect(!body.truncated)
    }

    @Test(arguments: [
        ("gzip -9nc < /dev/null", "gzip", "H4sIAAAAAAACAwMAAAAAAAAAAAA="),
        ("brotli -c < /dev/null", "br", "Pw=="),
        ("zstd -qc < /dev/null", "zstd", "KLUv/SQAAQAAmenYUQ=="),
    ])
    func encodedEmptyBody(command: String, coding: String, base64: String) throws {
        let bytes = try #require(Data(base64Encoded: base64).map(Array.init))
        #expect(decode(bytes, coding) == DecodedBody(bytes: [], truncated: false, codings: [coding]))
    }

    @Test(
        arguments: [
            ("compress", nil, "unknown coding 'compress'"),
            ("gzip, foo", nil, "unknown coding 'foo'"),
            (nil, "x-compress, chunked", "unknown coding 'x-compress'"),
        ] as [(String?, String?, String)])
    func unknownCoding(contentEncoding: String?, transferEncoding: String?, failure: String) {
        let body = BodyDecoder.decode(
            payload, contentEncoding: contentEncoding, transferEncoding: transferEncoding, limit: 1000,
            inputComplete: true)
        #expect(body.failure == failure)
        #expect(body.bytes.isEmpty)
    }

    @Test(
        arguments: [
            ("gzip", Array("this is not gzip".utf8), "corrupt gzip stream (zlib: incorrect header check)"),
            ("deflate", [0xFF, 0xFF, 0xFF, 0xFF], "corrupt deflate stream (zlib: invalid block type)"),
            ("zstd", Array("this is not zstd".utf8), "corrupt zstd stream (zstd: Unknown frame descriptor)"),
            ("br", [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], "corrupt br stream (brotli: "),
        ] as [(String, [UInt8], String)])
    func corruptStreamFailsWithTheLibrarysReason(coding: String, bytes: [UInt8], reason: String) {
        let body = decode(bytes, coding)
        #expect(body.failure?.hasPrefix(reason) == true, "\(body.failure ?? "nil")")
        #expect(body.bytes.isEmpty)
        #expect(body.codings == [coding])
    }

    /// A flipped bit in the compressed data is caught by the format's checks (Huffman codes, CRC, Adler, XXH64).
    @Test(arguments: fixtures.filter { $0.singleStream })
    func flippedByteFails(fixture: Fixture) {
        var bytes = fixture.bytes
        bytes[bytes.count / 2] ^= 0x5A
        let body = decode(bytes, fixture)
        #expect(body.failure != nil)
        #expect(body.bytes.isEmpty)
    }

    /// Arbitrary bytes under every coding, whole and as prefixes: never a trap, and a failure never carries bytes.
    @Test(arguments: ["gzip", "deflate", "br", "zstd", "gzip, br", "zstd, deflate"])
    func arbitraryBytesNeverTrap(coding: String) {
        // A fixed linear congruential generator, so a failure reproduces.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func nextByte() -> UInt8 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let headers = fixtures.map(\.bytes).flatMap { [Array($0.prefix(2)), Array($0.prefix(10))] } + [[]]
        for round in 0..<300 {
            // Real headers followed by noise get past the magic checks and into the decoders proper.
            let bytes = headers[round % headers.count] + (0..<(round % 97)).map { _ in nextByte() }
            for inputComplete in [true, false] {
                let body = decode(bytes, coding, limit: 4096, inputComplete: inputComplete)
                #expect(body.bytes.count <= 4096)
                if body.failure != nil { #expect(body.bytes.isEmpty) }
            }
        }
    }

    @Test func limitIsInclusive() throws {
        let gzip = try #require(fixtures.first).bytes
        let exact = decode(gzip, "gzip", limit: payload.count)
        #expect(exact == DecodedBody(bytes: payload, truncated: false, codings: ["gzip"]))
        let short = decode(gzip, "gzip", limit: payload.count - 1)
        #expect(short == DecodedBody(bytes: Array(payload.dropLast()), truncated: true, codings: ["gzip"]))
    }

    @Test func deflateHeaderCheck() {
        #expect(Inflate.hasZlibHeader([0x78, 0x9C]))
        #expect(Inflate.hasZlibHeader([0x78]))
        #expect(!Inflate.hasZlibHeader([0x78, 0x9D]))
        #expect(!Inflate.hasZlibHeader([0xAB, 0x56]))
        #expect(!Inflate.hasZlibHeader([]))
    }
}

/// Decompression bombs: output stops at the limit, quickly, however large the stream claims to be.
@Suite struct BombTests {
    static let limit = 1 << 20

    @Test func gzipGigabyteStopsAtLimit() throws {
        let bomb = try gzipBomb(mebibytes: 1024)
        #expect(bomb.count < 1_100_000)
        let start = ContinuousClock.now
        let body = decode(bomb, "gzip", limit: Self.limit)
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(body.failure == nil)
        #expect(body.truncated)
        #expect(body.bytes.count == Self.limit)
        #expect(body.bytes.allSatisfy { $0 == 0 })
    }

    @Test func deflateRawGigabyteStopsAtLimit() throws {
        let body = decode(try rawDeflateBomb(mebibytes: 1024), "deflate", limit: Self.limit)
        #expect(body.truncated && body.failure == nil && body.bytes.count == Self.limit)
    }

    /// 100 MiB of zeros, `head -c 100M /dev/zero | brotli -c`: 93 bytes.
    @Test func brotliStopsAtLimit() throws {
        let bomb = try #require(
            Data(
                base64Encoded: """
                    z///f/gnAOKxQCD3/p/////wTwDEYQGA7v0/////4Z8AiMMiAN37f/7//8M/ARCHBQC69//8//+HfwIgDgsAdO//+f//D/8EQB\
                    wWAOje/+f//w/+CYA4LADQvf8B
                    """
            ).map(Array.init))
        let body = decode(bomb, "br", limit: Self.limit)
        #expect(body.truncated && body.failure == nil && body.bytes.count == Self.limit)
    }

    /// 1 GiB as 1024 concatenated zstd frames of 1 MiB of zeros each.
    @Test func zstdFramesStopAtLimit() throws {
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var frame = [UInt8](repeating: 0, count: ZSTD_compressBound(zeros.count))
        let size = ZSTD_compress(&frame, frame.count, zeros, zeros.count, 19)
        try #require(ZSTD_isError(size) == 0)
        let bomb = Array([[UInt8]](repeating: Array(frame[..<size]), count: 1024).joined())
        let body = decode(bomb, "zstd", limit: Self.limit)
        #expect(body.truncated && body.failure == nil && body.bytes.count == Self.limit)
    }

    /// `head -c 10M /dev/zero | gzip -9nc | brotli -c`: the br stage alone yields more than the limit, so the
    /// gzip stage gets a cut input, and the gzip stage would again exceed it.
    @Test func stackedIntermediateStageIsBounded() throws {
        let bomb = try #require(
            Data(
                base64Encoded: """
                    H98n+J8FduMyNpbAe/ZLxoLI2/0rTylSkEwuv4mKkEztQjXTw8rM//Lr1b9UglsSWBy8UAIgAAL/9gIgDwNAwy0C+LxniVNtP7\
                    0pQF1BoR/jig0=
                    """
            ).map(Array.init))
        let body = decode(bomb, "gzip, br", limit: 4096)
        let zeros = [UInt8](repeating: 0, count: 4096)
        #expect(body == DecodedBody(bytes: zeros, truncated: true, codings: ["gzip", "br"]))
        // A limit between the two stages' sizes: br fits (about 10 KB of gzip), gzip's 10 MiB does not.
        let wide = decode(bomb, "gzip, br", limit: 64 * 1024)
        #expect(wide.truncated && wide.failure == nil && wide.bytes.count == 64 * 1024)
    }

    /// Raw deflate of `mebibytes` MiB of zeros built without holding them: one full-flushed block of 1 MiB of
    /// zeros, which references nothing before it, repeated, then an empty final block.
    func rawDeflateBomb(mebibytes: Int) throws -> [UInt8] {
        var stream = z_stream()
        try #require(authtap_deflate_init2(&stream, 9, -15) == Z_OK)
        defer { deflateEnd(&stream) }
        var zeros = [UInt8](repeating: 0, count: 1 << 20)
        var out = [UInt8](repeating: 0, count: 1 << 16)
        func run(_ flush: Int32, input: Int) throws -> [UInt8] {
            try zeros.withUnsafeMutableBufferPointer { inBuf in
                try out.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_in = inBuf.baseAddress
                    stream.avail_in = UInt32(input)
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = UInt32(outBuf.count)
                    let status = deflate(&stream, flush)
                    try #require(status == Z_OK || status == Z_STREAM_END)
                    try #require(stream.avail_in == 0 && stream.avail_out > 0)
                    return Array(outBuf[..<(outBuf.count - Int(stream.avail_out))])
                }
            }
        }
        let block = try run(Z_FULL_FLUSH, input: zeros.count)
        let final = try run(Z_FINISH, input: 0)
        return Array([[UInt8]](repeating: block, count: mebibytes).joined()) + final
    }

    /// A valid gzip member around `rawDeflateBomb`, CRC and size included.
    func gzipBomb(mebibytes: Int) throws -> [UInt8] {
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        let mebibyteCRC = crc32(0, zeros, UInt32(zeros.count))
        var crc = crc32(0, nil, 0)
        for _ in 0..<mebibytes { crc = crc32_combine(crc, mebibyteCRC, zeros.count) }
        let size = UInt32(truncatingIfNeeded: mebibytes << 20)
        let header: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 2, 3]
        let words: [UInt32] = [UInt32(truncatingIfNeeded: crc), size]
        let trailer = words.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
        return header + (try rawDeflateBomb(mebibytes: mebibytes)) + trailer
    }

    @Test func smallBombsDecodeWhole() throws {
        #expect(decode(try gzipBomb(mebibytes: 2), "gzip", limit: 2 << 20).bytes.count == 2 << 20)
        let exact = decode(try gzipBomb(mebibytes: 2), "gzip", limit: 2 << 20)
        #expect(!exact.truncated && exact.failure == nil)
    }
}
