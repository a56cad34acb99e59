import AuthtapAnalyzer
import AuthtapHAR
import AuthtapModel
import AuthtapOAuth
import FuzzSupport

/// `authtap import` without the store: the HAR parsed, each entry masked as on capture, then analyzed.
let masker = Masker(fingerprinter: Fingerprinter(key: Array(repeating: 9, count: 32)), bodyLimit: 1 << 20)
let analyzer = Analyzer(caPath: "/nonexistent/authtap-ca.pem")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard case .success(let result) = HARImport.parse(bytes) else { return 0 }
    let ledger = JWTLedger()
    var recorded: [Exchange] = []
    for (i, raw) in result.exchanges.prefix(64).enumerated() {
        var e = masker.record(raw, ledger: ledger)
        if let detail = e.errorDetail { e.errorDetail = masker.maskFreeText(detail) }
        e.id = Int64(i + 1)
        recorded.append(e)
    }
    _ = analyzer.analyze(recorded)
    return 0
}

@_cdecl("FuzzHAR_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
