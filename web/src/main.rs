fn main() {
    #[cfg(target_arch = "wasm32")]
    yew::Renderer::<proxyscope_web::App>::new().render();
}
