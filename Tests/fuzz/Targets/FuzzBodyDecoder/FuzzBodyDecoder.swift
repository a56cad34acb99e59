import AuthtapCodec
import FuzzSupport

/// Content codings and charsets. The first byte picks the coding list and whether the input is complete, the
/// second the declared charset; decoded output must stay within the limit.
let codings: [String?] = [
    nil, "gzip", "deflate", "br", "zstd", "gzip, br", "identity", "x-gzip", "br, zstd", "deflate, gzip", "compress",
]
let charsets: [String?] = [
    nil, "text/plain; charset=utf-8", "text/html; charset=iso-8859-1", "application/json; charset=utf-16",
    "text/plain; charset=utf-16be", "text/plain; charset=windows-1252", "text/plain; charset=\"UTF-16LE\"",
    "application/json", "text/plain; charset=shift_jis",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let choice = input.byte()
    let coding = codings[Int(choice >> 1) % codings.count]
    let complete = choice & 1 == 0
    let contentType = charsets[input.choose(charsets.count)]
    let limit = 256 * 1024
    let body = input.rest()
    let decoded = BodyDecoder.decode(
        body, contentEncoding: coding, transferEncoding: nil, limit: limit,
        inputComplete: complete)
    precondition(decoded.bytes.count <= limit, "decoded past the limit")
    let text = TextDecoding.utf8(decoded.bytes, contentType: contentType, truncated: decoded.truncated || !complete)
    if let text = text.text { precondition(text.utf8.count <= 4 * limit + 4, "text grew without bound") }
    _ = TextDecoding.utf8(body, contentType: contentType, truncated: !complete)
    return 0
}

@_cdecl("FuzzBodyDecoder_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
