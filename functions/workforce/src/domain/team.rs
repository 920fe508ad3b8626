//! Teams (班组) of a project and the labour subcontractor (劳务分包) each belongs to.

use serde::{Deserialize, Serialize};
use smartsite_shared::domain::tenancy::{ProjectId, Uscc, parse_name};
use smartsite_shared::ids::FieldError;

use super::TeamId;

/// A team as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Team {
    #[schema(value_type = String)]
    pub id: TeamId,
    #[schema(value_type = String)]
    pub project_id: ProjectId,
    pub name: String,
    pub subcontractor_name: String,
    /// 统一社会信用代码 of the subcontractor (GB 32100, check character verified).
    #[schema(value_type = String)]
    pub subcontractor_uscc: Uscc,
    pub created_at: String,
}

/// A team about to be created, parsed from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTeam {
    pub name: String,
    pub subcontractor_name: String,
    pub subcontractor_uscc: Uscc,
}

impl NewTeam {
    pub fn parse(
        name: &str,
        subcontractor_name: &str,
        subcontractor_uscc: &str,
    ) -> Result<NewTeam, FieldError> {
        Ok(NewTeam {
            name: parse_name("name", name)?,
            subcontractor_name: parse_name("subcontractor_name", subcontractor_name)?,
            subcontractor_uscc: Uscc::parse("subcontractor_uscc", subcontractor_uscc)?,
        })
    }

    pub fn into_team(self, id: TeamId, project_id: ProjectId, created_at: String) -> Team {
        Team {
            id,
            project_id,
            name: self.name,
            subcontractor_name: self.subcontractor_name,
            subcontractor_uscc: self.subcontractor_uscc,
            created_at,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn teams_need_names_and_a_valid_subcontractor_uscc() {
        let uscc = format!(
            "91220101MA0000001{}",
            Uscc::check_char("91220101MA0000001").unwrap()
        );
        let t = NewTeam::parse(" 钢筋班 ", "吉林劳务有限公司", &uscc).unwrap();
        assert_eq!(t.name, "钢筋班");
        let e = NewTeam::parse("钢筋班", "吉林劳务", "91220101MA00000010").unwrap_err();
        assert_eq!(e.field, "subcontractor_uscc");
        assert_eq!(NewTeam::parse("", "x", &uscc).unwrap_err().field, "name");
        assert_eq!(
            NewTeam::parse("班", "劳务\u{202e}", &uscc)
                .unwrap_err()
                .field,
            "subcontractor_name"
        );
    }
}
