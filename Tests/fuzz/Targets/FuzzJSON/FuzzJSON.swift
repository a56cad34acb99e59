import AuthtapAnalyzer
import AuthtapModel
import FuzzSupport

@testable import AuthtapOAuth

/// The JSON readers: the analyzer's parser (which HAR import also uses) and the masker's lexical JSON pass,
/// which must accept anything, truncated or not, and keep a valid document valid.
let masker = Masker(fingerprinter: Fingerprinter(key: Array(repeating: 3, count: 32)))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let parsed = JSONValue.parse(bytes)
    if case .success(let value) = parsed {
        _ = value.text
        _ = value["error"]?.string
        _ = value["expires_in"]?.number
    }
    var params: [OAuthParam] = []
    let masked = JSONMasking.mask(bytes, masker: masker, location: .responseBody, params: &params)
    if case .success = parsed, case .failure(let e) = JSONValue.parse(masked) {
        fatalError("masking broke a valid JSON document at byte \(e.offset): \(e.message)")
    }
    return 0
}

@_cdecl("FuzzJSON_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
