"""Model cards, one Markdown file per named model; a package only so the cards ship in the wheel."""
