//! (module under construction: see the owning issue)
