import AuthtapAnalyzer
import AuthtapModel
import Foundation
import Testing

// Numbers a server or a token issuer chooses: the analyzer must report, never trap on them.

@Test(arguments: ["1e300", "-1e300", "1.5", "9223372036854775807", "9.3e18"])
func hugeErrorCodesFromATokenEndpointAreAnalyzed(_ number: String) {
    let body = #"{"error":"invalid_grant","error_description":"AADSTS70008: expired","error_codes":[\#(number)]}"#
    let (flow, _) = healthyFlow(tokenStatus: 400, tokenResponse: body)
    let a = flow.analyze()
    #expect(a.transactions.contains { $0.outcome.hasPrefix("failed") }, "\(a.transactions.map(\.outcome))")
    #expect(a.findings.contains { $0.severity == .error })
}

@Test func hugeNestedErrorCodesAreAnalyzed() {
    let body = #"{"error":{"type":"OAuthException","message":"bad","code":1e300,"error_subcode":-1e300}}"#
    let (flow, _) = healthyFlow(tokenStatus: 400, tokenResponse: body)
    // Reaching the analysis at all is the point: both numbers used to go through a trapping Int(Double).
    #expect(!flow.analyze().transactions.isEmpty)
}

@Test(arguments: ["1e300", "-1e300", "9.3e18", "1e19"])
func hugeJWTTimeClaimsGiveFindingsNotATrap(_ value: String) throws {
    let times = #""iat":\#(value),"nbf":\#(value),"exp":-\#(value)"#
    let idToken = jwt(claims: #"{"iss":"https://as.example","aud":"app1","sub":"u1","nonce":"n-1",\#(times)}"#)
    let response = #"{"access_token":"AT-1","token_type":"Bearer","expires_in":3600,"id_token":"\#(idToken)"}"#
    let (flow, _) = healthyFlow(tokenResponse: response)
    let a = flow.analyze()
    let skew = a.findings.filter { $0.rule == "clock-skew" }
    // Positive: issued and valid far in the future, expired long ago. Negative: all in the past, still valid.
    #expect(skew.isEmpty == value.hasPrefix("-"), "\(skew.map(\.title))")
    for f in skew { #expect(Int(f.evidence["skew_seconds"] ?? "") != nil) }
}

@Test func checkedConversionsSaturateAndRefuse() {
    #expect(Int(wholeNumber: 1e300) == nil)
    #expect(Int(wholeNumber: .nan) == nil)
    #expect(Int(wholeNumber: -.infinity) == nil)
    #expect(Int(wholeNumber: 42.9) == 42)
    #expect(Int(wholeNumber: -42.9) == -42)
    #expect(Int(saturating: 1e300) == .max)
    #expect(Int(saturating: -1e300) == .min)
    #expect(Int(saturating: .nan) == 0)
    #expect(Int(saturating: 9.223372036854775807e18) == .max)
    #expect(Int(saturating: 9.2e18) == 9_200_000_000_000_000_000)
    #expect(Int64(saturating: .infinity) == .max)
    #expect(Int64(saturating: -3.5) == -3)
}
