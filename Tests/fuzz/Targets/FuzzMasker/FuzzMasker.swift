import AuthtapModel
import FuzzSupport

@testable import AuthtapOAuth

/// The masker on every shape it reads. The first byte picks the entry point, the second the Content-Type,
/// the rest is the payload (headers are `name: value` lines, exchanges are split on NUL).
let contentTypes = [
    "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=XyZ", "text/html",
    "application/xml", "text/plain", "application/jwt", "", "application/json; charset=iso-8859-1",
    "text/html; charset=utf-16", "application/octet-stream", "multipart/mixed", "application/problem+json",
]

let masker = Masker(fingerprinter: Fingerprinter(key: Array(repeating: 7, count: 32)), bodyLimit: 64 * 1024)

func headerLines(_ text: String) -> [HeaderField] {
    text.split(separator: "\n", omittingEmptySubsequences: true).prefix(64).map { line in
        let parts = line.split(separator: ":", maxSplits: 1)
        return HeaderField(String(parts.first ?? ""), parts.count > 1 ? String(parts[1]) : "")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let entry = input.choose(7)
    let contentType = contentTypes[input.choose(contentTypes.count)]
    var params: [OAuthParam] = []
    switch entry {
    case 0:
        let body = input.rest()
        _ = masker.recordBody(
            CapturedBody(bytes: body, size: body.count),
            headers: [HeaderField("Content-Type", contentType)], location: .requestBody,
            params: &params)
    case 1:
        let text = String(decoding: input.rest(), as: UTF8.self)
        _ = masker.maskBodyText(text, contentType: contentType, location: .responseBody, params: &params)
    case 2:
        _ = masker.maskHeaders(
            headerLines(String(decoding: input.rest(), as: UTF8.self)),
            location: .requestHeader, params: &params)
    case 3:
        _ = masker.maskURL(
            String(decoding: input.rest(), as: UTF8.self), location: .requestTarget,
            params: &params)
    case 4:
        _ = masker.maskFreeText(String(decoding: input.rest(), as: UTF8.self))
    case 5:
        let name = input.text()
        _ = masker.maskReadable(String(decoding: input.rest(), as: UTF8.self), name: name.isEmpty ? nil : name)
    default:
        // A whole exchange: target, request headers, request body, response headers, response body.
        var raw = Exchange(
            connectionID: 1, clientAddress: "fuzz", scheme: .https, host: "idp.example",
            port: 443, method: "POST", target: input.text(), start: .init(timeIntervalSince1970: 0))
        raw.requestHeaders = headerLines(input.text())
        let request = input.field()
        raw.requestBody = CapturedBody(bytes: request, size: request.count)
        raw.status = 200
        raw.responseHeaders = headerLines(input.text())
        let response = input.rest()
        raw.responseBody = CapturedBody(bytes: response, size: response.count + Int(size % 3))
        _ = masker.record(raw, ledger: JWTLedger())
    }
    return 0
}

@_cdecl("FuzzMasker_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
