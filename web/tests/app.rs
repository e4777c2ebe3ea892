//! The whole app in headless Chromium, running core for real: send a packet from the demo, step
//! with buttons and keys, switch language.
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn settle() {
    yew::platform::time::sleep(Duration::from_millis(60)).await;
}

fn el(sel: &str) -> web_sys::HtmlElement {
    gloo_utils::document()
        .query_selector(sel)
        .unwrap()
        .unwrap_or_else(|| panic!("no {sel}"))
        .unchecked_into()
}

fn text(sel: &str) -> String {
    el(sel).text_content().unwrap_or_default()
}

fn press(key: &str) {
    let init = web_sys::KeyboardEventInit::new();
    init.set_key(key);
    init.set_bubbles(true);
    let ev = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    gloo_utils::document()
        .body()
        .unwrap()
        .dispatch_event(&ev)
        .unwrap();
}

fn position() -> (usize, usize) {
    let p = text("#position");
    let (a, b) = p
        .split_once(" / ")
        .unwrap_or_else(|| panic!("position {p:?}"));
    (a.trim().parse().unwrap(), b.trim().parse().unwrap())
}

#[wasm_bindgen_test]
async fn demo_send_step_and_switch_language() {
    let storage = gloo_utils::window().local_storage().unwrap().unwrap();
    storage.set_item("proxyscope.lang", "en").unwrap();
    let doc = gloo_utils::document();
    let root = doc.create_element("div").unwrap();
    doc.body().unwrap().append_child(&root).unwrap();
    yew::Renderer::<proxyscope_web::App>::with_root(root).render();
    settle().await;

    // The demo's ClusterIP is offered and its three Pods are drawn before anything is sent.
    let target: web_sys::HtmlSelectElement = el("#target").unchecked_into();
    let options: Vec<String> = (0..target.length())
        .map(|i| target.item(i).unwrap().text_content().unwrap())
        .collect();
    assert!(
        options
            .iter()
            .any(|o| o.contains("ClusterIP 10.104.14.67:80")),
        "{options:?}"
    );
    assert_eq!(
        doc.query_selector_all(".pod[data-endpoint]")
            .unwrap()
            .length(),
        3
    );

    el("#send").click();
    settle().await;
    press(" "); // pause the autoplay
    press("Home");
    settle().await;
    assert_eq!(position().0, 1);
    assert_eq!(text("#hdr-dst code"), "10.104.14.67:80");

    press("End");
    settle().await;
    let (cur, total) = position();
    assert_eq!(cur, total);
    let dst = text("#hdr-dst code");
    assert!(
        ["10.0.0.2:", "10.0.0.3:", "10.0.0.4:"]
            .iter()
            .any(|p| dst.starts_with(p)),
        "{dst}"
    );
    assert!(text("#narration").starts_with("Result"));

    press("ArrowLeft");
    settle().await;
    assert_eq!(position().0, total - 1);
    el("#fwd").click();
    settle().await;
    assert_eq!(position().0, total);

    press("l");
    settle().await;
    assert_eq!(text("#send"), "发送数据包");
    assert!(text("#narration").starts_with("结果"));
    assert_eq!(
        doc.document_element()
            .unwrap()
            .get_attribute("lang")
            .as_deref(),
        Some("zh-CN")
    );
    assert_eq!(
        storage.get_item("proxyscope.lang").unwrap().as_deref(),
        Some("zh")
    );
    el("#lang").click();
    settle().await;
    assert_eq!(text("#send"), "Send packet");
}
