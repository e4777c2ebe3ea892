//! Component tests in headless Chromium: the views render what a frame says, in both languages.
#![cfg(target_arch = "wasm32")]

mod support;

use std::rc::Rc;
use std::time::Duration;

use proxyscope_web::diagram::{self, Diagram};
use proxyscope_web::engine::timeline;
use proxyscope_web::i18n::Lang;
use proxyscope_web::state::Action;
use proxyscope_web::views::{
    HeaderProps, PacketHeader, RulePanel, RuleProps, StepText, StepsProps,
};
use support::*;
use wasm_bindgen_test::*;
use yew::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

fn mount() -> web_sys::Element {
    let doc = gloo_utils::document();
    let root = doc.create_element("div").unwrap();
    doc.body().unwrap().append_child(&root).unwrap();
    root
}

async fn settle() {
    yew::platform::time::sleep(Duration::from_millis(30)).await;
}

fn text(root: &web_sys::Element, sel: &str) -> String {
    root.query_selector(sel)
        .unwrap()
        .unwrap_or_else(|| panic!("no {sel}"))
        .text_content()
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn rule_panel_marks_the_failing_match() {
    let tl = timeline(&sample_trace());
    let root = mount();
    let props = RuleProps {
        lang: Lang::En,
        frame: Some(tl.frames[MASQ_RULE_FRAME].clone()),
    };
    yew::Renderer::<RulePanel>::with_root_and_props(root.clone(), props).render();
    settle().await;
    assert_eq!(text(&root, "mark.fail"), "! -s 10.0.0.0/16");
    assert_eq!(text(&root, "#rule-status"), "did not match");
    assert!(text(&root, "#chain-stack").contains("KUBE-SVC-X"));
    assert!(root.query_selector("pre.unmatched").unwrap().is_some());
}

#[wasm_bindgen_test]
async fn header_shows_dnat_rewrite_only_from_the_dnat_step() {
    let tr = sample_trace();
    let tl = timeline(&tr);
    for (frame, dst, rewritten) in [
        (DNAT_FRAME - 1, "10.104.14.67:80", false),
        (DNAT_FRAME, "10.0.0.2:8080", true),
    ] {
        let root = mount();
        let props = HeaderProps {
            lang: Lang::En,
            original: tr.packet,
            frame: Some(tl.frames[frame].clone()),
        };
        yew::Renderer::<PacketHeader>::with_root_and_props(root.clone(), props).render();
        settle().await;
        let row = text(&root, "#hdr-dst code");
        assert_eq!(row, dst);
        assert_eq!(
            root.query_selector("#hdr-dst.changed").unwrap().is_some(),
            rewritten
        );
        // The source is untouched: a Pod source is not masqueraded for a ClusterIP.
        assert_eq!(text(&root, "#hdr-src code"), "10.0.1.5:40000");
    }
}

#[wasm_bindgen_test]
async fn step_list_is_an_ordered_list_with_the_current_step_and_live_narration() {
    let tr = Rc::new(sample_trace());
    let tl = Rc::new(timeline(&tr));
    for (lang, needle) in [(Lang::En, "DNAT"), (Lang::Zh, "目的地址")] {
        let root = mount();
        let props = StepsProps {
            lang,
            trace: Some(tr.clone()),
            timeline: tl.clone(),
            cursor: DNAT_FRAME,
            on_action: Callback::from(|_: Action| ()),
        };
        yew::Renderer::<StepText>::with_root_and_props(root.clone(), props).render();
        settle().await;
        let items = root.query_selector_all("ol#step-list > li").unwrap();
        assert_eq!(items.length() as usize, tl.len());
        let cur = root
            .query_selector("li[aria-current=step]")
            .unwrap()
            .unwrap();
        assert!(
            cur.text_content().unwrap().contains(needle),
            "{lang:?}: {}",
            cur.text_content().unwrap()
        );
        let live = root.query_selector("#narration").unwrap().unwrap();
        assert_eq!(live.get_attribute("aria-live").as_deref(), Some("polite"));
        assert!(live.text_content().unwrap().contains("10.0.0.2:8080"));
    }
}

#[wasm_bindgen_test]
async fn diagram_lights_the_current_hook_and_the_chosen_pod() {
    let tr = Rc::new(sample_trace());
    let tl = Rc::new(timeline(&tr));
    let pods = Rc::new(vec![
        "10.0.0.2:8080".to_string(),
        "10.0.0.3:8080".into(),
        "10.0.0.4:8080".into(),
    ]);
    let root = mount();
    let props = diagram::Props {
        lang: Lang::En,
        client_label: "pod on other node".into(),
        pods: pods.clone(),
        local_pods: Rc::new(vec![ip("10.0.0.2")]),
        timeline: tl.clone(),
        trace: Some(tr.clone()),
        cursor: 1,
    };
    yew::Renderer::<Diagram>::with_root_and_props(root.clone(), props).render();
    settle().await;
    let active: Vec<String> = (0..root.query_selector_all(".hook.active").unwrap().length())
        .map(|i| {
            root.query_selector_all(".hook.active")
                .unwrap()
                .get(i)
                .unwrap()
                .unchecked_into::<web_sys::Element>()
                .id()
        })
        .collect();
    assert_eq!(active, ["hook-PREROUTING"]);
    let where_ = |ep: &str| text(&root, &format!(".pod[data-endpoint='{ep}'] text.sub"));
    assert!(where_("10.0.0.2:8080").starts_with("this node"));
    assert!(where_("10.0.0.3:8080").starts_with("other node"));
    assert!(where_("10.0.0.3:8080").ends_with("p = 0.333"));

    let root = mount();
    let props = diagram::Props {
        lang: Lang::En,
        client_label: "c".into(),
        pods,
        local_pods: Default::default(),
        timeline: tl.clone(),
        trace: Some(tr),
        cursor: tl.len() - 1,
    };
    yew::Renderer::<Diagram>::with_root_and_props(root.clone(), props).render();
    settle().await;
    let pod = root.query_selector(".pod.active").unwrap().unwrap();
    assert_eq!(
        pod.get_attribute("data-endpoint").as_deref(),
        Some("10.0.0.2:8080")
    );
    assert!(
        root.query_selector("#hook-INPUT.visited")
            .unwrap()
            .is_none(),
        "a forwarded packet never meets INPUT"
    );
}

use wasm_bindgen::JsCast;

/// The side-by-side panel on real traces of the demo (core runs in the browser): the iptables
/// column names the random draw, the IPVS column the scheduler, in Chinese too.
#[wasm_bindgen_test]
async fn compare_panel_contrasts_the_two_modes_in_both_languages() {
    use proxyscope_web::compare::{ComparePanel, Props};
    use proxyscope_web::state::State;
    let mut s = State::new(Lang::Zh, false);
    let m = s.model().unwrap();
    let t = m
        .targets
        .iter()
        .position(|t| t.kind == "cluster_ip")
        .unwrap();
    s.apply(Action::SelectTarget(t));
    s.apply(Action::SetCompare(true));
    s.apply(Action::Send { seed: 2, now: 0.0 });
    let root = mount();
    let props = Props {
        lang: Lang::Zh,
        traces: s.compared(),
    };
    yew::Renderer::<ComparePanel>::with_root_and_props(root.clone(), props).render();
    settle().await;
    assert!(text(&root, "#compare-iptables .how").contains("statistic"));
    assert!(text(&root, "#compare-ipvs .how").starts_with("rr"));
    assert!(text(&root, "#compare-title").contains("同一个数据包"));
    // IPVS rewrites at LOCAL_IN (ip_vs_ops hooks NF_INET_LOCAL_IN), iptables in nat PREROUTING.
    assert!(text(&root, "#compare-notes").contains("LOCAL_IN"));
    assert!(text(&root, "#compare-notes").contains("PREROUTING"));
}
