//! The proxyscope web explainer.
use yew::prelude::*;

#[function_component(App)]
pub fn app() -> Html {
    html! { <main id="app"><h1>{ "proxyscope" }</h1></main> }
}
