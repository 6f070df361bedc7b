//! Misused `#[actor]` blocks fail to compile with an error at the user's line;
//! names and markers the generated code must respect compile and run.

#[test]
fn misuse_is_a_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile-fail/*.rs");
    cases.pass("tests/compile-pass/*.rs");
}
