//! Mouse input: a click focuses the panel under it (and the heatmap cell or proposal row
//! clicked), the wheel scrolls the panel under the pointer. Uses the last frame's areas.

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Position;

use super::app::{App, Panel, Request};
use super::grid::KINDS;

impl App {
    pub fn on_mouse(&mut self, m: MouseEvent) -> Vec<Request> {
        let at = Position::new(m.column, m.row);
        let Some(panel) = self
            .areas
            .panels
            .iter()
            .find(|(_, r)| r.contains(at))
            .map(|(p, _)| *p)
        else {
            return vec![];
        };
        match m.kind {
            MouseEventKind::ScrollUp => self.scroll_by(panel, -3),
            MouseEventKind::ScrollDown => self.scroll_by(panel, 3),
            MouseEventKind::Down(MouseButton::Left) => {
                self.focus_panel(panel);
                if let (Panel::Heatmap, Some((x0, y0, cw, first, shown))) = (panel, self.areas.heat)
                {
                    if m.column >= x0 && m.row >= y0 && cw > 0 {
                        let b = ((m.column - x0) / cw) as usize;
                        let k = (m.row - y0) as usize;
                        if b < shown && k < KINDS.len() {
                            self.cursor = (first + b, k);
                        }
                    }
                }
                if let (Panel::Proposal, Some((y0, first, n))) = (panel, self.areas.rows) {
                    let i = first + (m.row as usize).saturating_sub(y0 as usize);
                    if m.row >= y0 && i < n {
                        if let Some(ed) = self.editor.as_mut() {
                            ed.select(i as isize - ed.selected as isize);
                        }
                    }
                }
            }
            _ => {}
        }
        vec![]
    }
}
