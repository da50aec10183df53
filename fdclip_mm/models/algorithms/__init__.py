from .data_preprocessor import DistillDataPreprocessor, DistillInputs
from .feature_distiller import FeatureDistiller
from .student_tokens import StudentTokens
from .teacher_branch import TeacherBranch

__all__ = ['DistillDataPreprocessor', 'DistillInputs', 'FeatureDistiller', 'StudentTokens', 'TeacherBranch']
