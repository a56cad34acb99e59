import AuthtapModel
import Testing

@testable import AuthtapOAuth

/// A recorded parameter keeps what the recorded text keeps: a secret nested in an ordinary parameter is masked in
/// both. The shape is a sign-in form's return URL (Django's `next`, as the browser test's login POST sends it) that
/// carries a callback with its code.
@Test func aSecretNestedInAReturnURLIsMaskedInTheRecordedParameterToo() {
    var params: [OAuthParam] = []
    let form = "username=alice&next=%2Fcb%3Fcode%3DSplxlOBeZQQYbYS6WxSbIA%26state%3Dxyz"
    let text = masker.maskPairs(Substring(form), location: .requestBody, params: &params)
    #expect(!text.contains("SplxlOBeZQQYbYS6WxSbIA"))
    let next = params.first { $0.name == "next" }
    #expect(next != nil)
    #expect(next?.value.contains("SplxlOBeZQQYbYS6WxSbIA") == false)
    #expect(next?.value.hasPrefix("/cb?code=[masked code") == true)
    #expect(params.first { $0.name == "username" }?.value == "alice")
}
